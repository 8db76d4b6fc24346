/**
 * --bucket-mb through the whole cluster: the workers' buckets go out while backward runs (the coordinator's
 * debug step lines say when each went and came), and the run ends with the weights of a run that sent every
 * node whole, for any worker count N, with and without shard reducers, over ws and NATS, on synthetic and real
 * compute.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, run, runOnce, smallMnist, tempDir } from '../helpers/gradfleet.js';
import { startNats } from '../helpers/nats.js';

const dir = tempDir('gradfleet-buckets-');
// 4 micro-batches a step: 1 worker sends one node of level 2, 2 workers two of level 1, 4 workers four leaves.
const synthetic = [
  'train',
  '--model',
  'mnist-cnn',
  '--backend',
  'synthetic',
  '--synthetic-ms',
  '150',
  '--batch-size',
  '128',
  '--micro-batch',
  '32',
  '--max-steps',
  '3',
  '--seed',
  '9',
  '--json',
];
const whole = runOnce([...synthetic, '--workers', '1', '--out', `${dir}/whole`]);

const stepLines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.includes('"step done"'))
    .map((l) => JSON.parse(l));

describe('--bucket-mb', () => {
  it('synthetic mnist-cnn, 2 workers, 1 MB buckets: the dense layers’ bucket goes during backward and arrives before compute ends; the weights of whole nodes', async () => {
    const r = await run([...synthetic, '--workers', '2', '--bucket-mb', '1', '--out', `${dir}/timed`], {
      GRADFLEET_LOG_LEVEL: 'debug',
    });
    const summary = expectOk(r);
    expect(summary.weights_sha256).toBe((await whole()).weights_sha256);
    expect(summary.rejected_frames).toEqual({});
    const lines = stepLines(r.stderr);
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(line.buckets).toHaveLength(2);
      for (const node of line.buckets) {
        // The dense layers (3.35M values) in one bucket once their backward ends, the convolutions' at the end.
        expect(node.values).toEqual([3_348_746, 140_128]);
        expect(node.sent_ms[0]).toBeLessThan(node.compute_ms - 50);
        expect(node.sent_ms[1]).toBeGreaterThanOrEqual(node.compute_ms - 1);
        expect(node.arrived_ms).toHaveLength(2);
      }
    }
  }, 60_000);

  it.each([
    [1, 0],
    [2, 0],
    [4, 0],
    [1, 2],
    [2, 2],
    [4, 2],
  ])(
    'synthetic, N = %i, S = %i, 0.3 MB buckets: every node in buckets, the weights of whole nodes',
    async (workers, shards) => {
      const r = await run(
        [
          ...synthetic,
          '--workers',
          String(workers),
          ...(shards > 0 ? ['--shards', String(shards)] : []),
          '--bucket-mb',
          '0.3',
          '--out',
          `${dir}/n${workers}s${shards}`,
        ],
        { GRADFLEET_LOG_LEVEL: 'debug' },
      );
      const summary = expectOk(r);
      expect(summary).toMatchObject({ steps: 3, workers, shards: Math.max(1, shards), rejected_frames: {} });
      expect(summary.weights_sha256).toBe((await whole()).weights_sha256);
      // One node per worker a step (4 micro-batches shared evenly), each in buckets; shards take the arrivals.
      const lines = stepLines(r.stderr);
      expect(lines).toHaveLength(3);
      for (const line of lines) {
        expect(line.buckets).toHaveLength(workers);
        for (const node of line.buckets) {
          expect(node.values.length).toBeGreaterThan(1);
          expect(node.arrived_ms).toHaveLength(shards > 0 ? 0 : node.values.length);
        }
      }
    },
    60_000,
  );

  it('over NATS, 2 workers, 2 shard reducers: the weights of whole nodes', async () => {
    const nats = await startNats('buckets', []);
    const summary = expectOk(
      await run([
        ...synthetic,
        '--transport',
        'nats',
        '--nats-url',
        nats.url,
        '--workers',
        '2',
        '--shards',
        '2',
        '--bucket-mb',
        '0.3',
        '--out',
        `${dir}/nats`,
      ]),
    );
    expect(summary).toMatchObject({ transport: 'nats', steps: 3, shards: 2, rejected_frames: {} });
    expect(summary.weights_sha256).toBe((await whole()).weights_sha256);
    await nats.stop();
  }, 60_000);

  it('real compute (wasm, mnist-small), 2 workers, 2 shard reducers, layer-sized buckets: the weights and accuracy of whole nodes', async () => {
    const data = smallMnist(dir, 512, 128);
    const real = [
      'train',
      '--model',
      'mnist-small',
      '--backend',
      'wasm',
      '--train',
      data.train,
      '--test',
      data.test,
      '--batch-size',
      '64',
      '--micro-batch',
      '16',
      '--max-steps',
      '8',
      '--seed',
      '4',
      '--workers',
      '2',
      '--shards',
      '2',
      '--json',
    ];
    const plain = expectOk(await run([...real, '--out', `${dir}/real-whole`]));
    const bucketed = expectOk(await run([...real, '--bucket-mb', '0.01', '--out', `${dir}/real-buckets`]));
    expect(bucketed.rejected_frames).toEqual({});
    expect(bucketed.weights_sha256).toBe(plain.weights_sha256);
    expect(bucketed.test_accuracy).toBe(plain.test_accuracy);
  }, 120_000);
});
