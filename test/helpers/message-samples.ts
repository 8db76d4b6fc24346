/**
 * One sample of every message type, with the number of payload values each carries (round-trip and fuzz
 * tests).
 */
import type { Message } from '../../protocol/messages.js';

const fingerprint = 'ab'.repeat(32);
const layout = [
  { name: 'conv1/kernel', shape: [3, 3, 1, 16], offset: 0 },
  { name: 'conv1/bias', shape: [16], offset: 144 },
];
const dataset = { spec: 'mnist:train', fingerprint, count: 60000, height: 28, width: 28 };
/** The union is exhaustive: codec.test.ts checks that a new message type gets a sample here. */
export const MESSAGE_SAMPLES: [Message, number][] = [
  [{ type: 'hello', workerId: 'w-1', backend: 'wasm', nonce: new Uint8Array(32).fill(1) }, 0],
  [{ type: 'challenge', nonce: new Uint8Array(32).fill(2), proof: new Uint8Array(32).fill(3) }, 0],
  [{ type: 'auth', proof: new Uint8Array(32).fill(4) }, 0],
  [
    {
      type: 'welcome',
      runId: 'run',
      model: 'mnist-small',
      seed: 1,
      batchSize: 64,
      microBatchSize: 16,
      layout,
      layoutSize: 160,
      wire: 'f32',
      heartbeatMs: 2000,
      heartbeatTimeoutMs: 20000,
      train: dataset,
      test: { ...dataset, count: 10000 },
    },
    0,
  ],
  [{ type: 'ready', missing: ['train'] }, 0],
  [
    {
      type: 'dataChunk',
      split: 'test',
      first: 8,
      count: 2,
      total: 10,
      images: new Uint8Array(2 * 784).fill(7),
      labels: Uint8Array.of(3, 9),
    },
    0,
  ],
  [{ type: 'weights', version: 4, payloadValues: 3 }, 3],
  [{ type: 'holding', version: 4 }, 0],
  [
    {
      type: 'assign',
      step: 3,
      epoch: 0,
      batchStart: 192,
      batchSamples: 64,
      weightsVersion: 3,
      first: 2,
      count: 2,
    },
    0,
  ],
  [
    {
      type: 'contribution',
      step: 3,
      level: 1,
      index: 1,
      lossSum: 1.25,
      correct: 50,
      samples: 64,
      computeSeconds: 0.02,
      payloadValues: 7,
    },
    7,
  ],
  [{ type: 'evaluate', round: 2, weightsVersion: 7, chunkSize: 500, first: 4, count: 3 }, 0],
  [{ type: 'evaluation', round: 2, first: 4, count: 2, lossSums: [1.5, 2.5], payloadValues: 5 }, 5],
  [{ type: 'heartbeat', sentAt: 1234.5 }, 0],
  [{ type: 'error', code: 'malformed_header', message: 'nope' }, 0],
  [{ type: 'shutdown', reason: 'done' }, 0],
  [
    {
      type: 'hello',
      workerId: 'shard-1',
      backend: 'shard',
      serves: 'ws://10.0.0.2:7171',
      nonce: new Uint8Array(32).fill(5),
    },
    0,
  ],
  [
    {
      type: 'welcome',
      runId: 'run',
      model: 'mnist-small',
      seed: 1,
      batchSize: 64,
      microBatchSize: 16,
      layout,
      layoutSize: 160,
      wire: 'bf16',
      heartbeatMs: 2000,
      heartbeatTimeoutMs: 20000,
      train: dataset,
      test: { ...dataset, count: 10000 },
      shards: [
        { offset: 0, size: 80, url: 'ws://10.0.0.2:7171' },
        { offset: 80, size: 80, url: 'ws://10.0.0.3:7171' },
      ],
    },
    0,
  ],
  [{ type: 'weights', version: 5, offset: 80, payloadValues: 2 }, 2],
  [
    {
      type: 'contribution',
      step: 3,
      level: 0,
      index: 2,
      offset: 80,
      lossSum: 0.5,
      correct: 9,
      samples: 16,
      computeSeconds: 0.01,
      payloadValues: 4,
    },
    4,
  ],
  [{ type: 'shardAssign', index: 1, offset: 80, size: 80 }, 0],
  [{ type: 'shardState', tensor: 'adam_v', version: 6, adamStep: 6, payloadValues: 3 }, 3],
  [{ type: 'shardLoaded', version: 6 }, 0],
  [{ type: 'collect', version: 6 }, 0],
  [
    {
      type: 'reduce',
      step: 6,
      microBatches: 4,
      nodes: [{ level: 2, index: 0, worker: 'w-1' }],
      adam: { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
    },
    0,
  ],
  [
    {
      type: 'sliceVerdict',
      step: 6,
      level: 1,
      index: 1,
      worker: 'w-2',
      reason: 'non_finite',
      detail: 'value 3 is NaN',
      squares: 0,
    },
    0,
  ],
  [
    {
      type: 'reduced',
      step: 6,
      version: 7,
      gradSquares: 0.25,
      seconds: { reduce: 0.01, optimizer: 0.002, broadcast: 0.001 },
      bytesIn: 1000,
      bytesOut: 2000,
    },
    0,
  ],
  [{ type: 'sliceSquares', step: 6, bins: Array.from({ length: 765 }, (_, i) => i % 7) }, 0],
  [{ type: 'clipScale', step: 6, scale: 0.5 }, 0],
  [
    {
      type: 'compare',
      step: 6,
      node: { level: 1, index: 0, worker: 'w-1' },
      against: { level: 1, index: 0, worker: 'w-2' },
    },
    0,
  ],
  [
    {
      type: 'comparison',
      step: 6,
      node: { level: 1, index: 0, worker: 'w-1' },
      against: { level: 1, index: 0, worker: 'w-2' },
      diffSquares: 0,
      squares: 2.5,
      againstSquares: 2.5,
      identical: true,
    },
    0,
  ],
];
