/** One sample of every message type, with the number of payload values each carries (round-trip and fuzz tests). */
import type { Message } from '../../protocol/messages.js';

const fingerprint = 'ab'.repeat(32);
const layout = [{ name: 'conv1/kernel', shape: [3, 3, 1, 16], offset: 0 }, { name: 'conv1/bias', shape: [16], offset: 144 }];
const dataset = { spec: 'mnist:train', fingerprint, count: 60000, height: 28, width: 28 };
/** The union is exhaustive: codec.test.ts checks that a new message type gets a sample here. */
export const MESSAGE_SAMPLES: [Message, number][] = [
  [{ type: 'hello', workerId: 'w-1', backend: 'wasm', nonce: new Uint8Array(32).fill(1) }, 0],
  [{ type: 'challenge', nonce: new Uint8Array(32).fill(2), proof: new Uint8Array(32).fill(3) }, 0],
  [{ type: 'auth', proof: new Uint8Array(32).fill(4) }, 0],
  [{
    type: 'welcome', runId: 'run', model: 'mnist-small', seed: 1, batchSize: 64, microBatchSize: 16, layout, layoutSize: 160, wire: 'f32',
    heartbeatMs: 2000, heartbeatTimeoutMs: 20000, train: dataset, test: { ...dataset, count: 10000 },
  }, 0],
  [{ type: 'ready', missing: ['train'] }, 0],
  [{ type: 'dataChunk', split: 'test', first: 8, count: 2, total: 10, images: new Uint8Array(2 * 784).fill(7), labels: Uint8Array.of(3, 9) }, 0],
  [{ type: 'weights', version: 4, payloadValues: 3 }, 3],
  [{ type: 'holding', version: 4 }, 0],
  [{ type: 'assign', step: 3, epoch: 0, batchStart: 192, batchSamples: 64, weightsVersion: 3, first: 2, count: 2 }, 0],
  [{ type: 'contribution', step: 3, level: 1, index: 1, lossSum: 1.25, correct: 50, samples: 64, computeSeconds: 0.02, payloadValues: 7 }, 7],
  [{ type: 'evaluate', round: 2, weightsVersion: 7, chunkSize: 500, first: 4, count: 3 }, 0],
  [{ type: 'evaluation', round: 2, first: 4, count: 2, lossSums: [1.5, 2.5], payloadValues: 5 }, 5],
  [{ type: 'heartbeat', sentAt: 1234.5 }, 0],
  [{ type: 'error', code: 'malformed_header', message: 'nope' }, 0],
  [{ type: 'shutdown', reason: 'done' }, 0],
];
