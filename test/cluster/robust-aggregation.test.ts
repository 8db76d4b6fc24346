/**
 * Robust aggregation on a real cluster (real MNIST, real sockets): an outlier node is rechecked by
 * another worker and a refuted one rejected, with the undisturbed run's bits; clipping gives the
 * same bits for any worker count; shares follow the coordinator's own timing, not workers' claims.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, listeningUrl, run, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 600, 200);
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '5',
  '--max-steps',
  '8',
  '--epochs',
  '1',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];

const undisturbed = runOnce([
  'train',
  ...config,
  '--workers',
  '2',
  '--backend',
  'wasm',
  '--out',
  `${dir}/undisturbed`,
]);

async function coordinator(name: string, extra: string[]) {
  const p = start(['coordinator', ...config, '--port', '0', '--out', `${dir}/${name}`, ...extra]);
  return { ...p, url: await listeningUrl(p) };
}
const worker = (url: string, id: string, ...extra: string[]) =>
  start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--data-dir', dir, ...extra]);

describe('--outlier-factor', () => {
  it('with no poisoner the check changes no bit of the weights', async () => {
    const checked = expectOk(
      await run([
        'train',
        ...config,
        '--workers',
        '3',
        '--backend',
        'wasm',
        '--outlier-factor',
        '4',
        '--out',
        `${dir}/checked`,
      ]),
    );
    expect(checked.rejected_frames).toEqual({});
    expect(checked.weights_sha256).toBe((await undisturbed()).weights_sha256);
  }, 120_000);

  it('a node scaled ×1000 is recomputed by another worker, rejected as an outlier naming its sender, and the run ends with the undisturbed bits', async () => {
    const c = await coordinator('poisoned', ['--min-workers', '3', '--outlier-factor', '4']);
    worker(c.url, 'honest-1');
    worker(c.url, 'honest-2');
    worker(c.url, 'poisoner', '--fault-scale-at-step', '3');
    const summary = expectOk(await c.done);
    expect(summary.rejected_frames).toEqual({ outlier: 1 });
    expect(c.log()).toMatch(
      /node \[\d+, \d+\) of step 3 from poisoner .* differs from another worker's recomputation/,
    );
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
  }, 120_000);

  it("with --shards 2: each shard reports its slices' Σg², the ×1000 node is recomputed, compared slice by slice on the shards, rejected, and the run ends with the undisturbed bits", async () => {
    const c = await coordinator('poisoned-sharded', [
      '--min-workers',
      '3',
      '--outlier-factor',
      '4',
      '--shards',
      '2',
    ]);
    const shards = ['shard-a', 'shard-b'].map((id) => start(['shard', '--connect', c.url, '--id', id]));
    worker(c.url, 'honest-1');
    worker(c.url, 'honest-2');
    worker(c.url, 'poisoner', '--fault-scale-at-step', '3');
    const summary = expectOk(await c.done);
    await Promise.all(shards.map((s) => s.done));
    expect(summary).toMatchObject({ shards: 2, replayed_steps: 0, rejected_frames: { outlier: 1 } });
    expect(c.log()).toMatch(
      /node \[\d+, \d+\) of step 3 from poisoner .* differs from another worker's recomputation/,
    );
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
  }, 180_000);
});

describe('--max-grad-norm', () => {
  it('clips after the average and before Adam: the same bits for 1 and 3 workers, other bits than unclipped', async () => {
    const clip = ['--max-grad-norm', '0.05'];
    const [one, three] = await Promise.all(
      [1, 3].map(async (n) =>
        expectOk(
          await run([
            'train',
            ...config,
            ...clip,
            '--workers',
            String(n),
            '--backend',
            'wasm',
            '--out',
            `${dir}/clip-${n}`,
          ]),
        ),
      ),
    );
    expect(one.weights_sha256).toBe(three.weights_sha256);
    expect(one.weights_sha256).not.toBe((await undisturbed()).weights_sha256);
  }, 180_000);

  it('with --shards 2 and 3: each shard sends its exact Σg², all scale by the combined norm, and the bits equal the unsharded clipped run', async () => {
    const clip = ['--max-grad-norm', '0.05'];
    const runs = await Promise.all(
      [1, 2, 3].map(async (s) =>
        expectOk(
          await run([
            'train',
            ...config,
            ...clip,
            '--workers',
            '2',
            ...(s > 1 ? ['--shards', String(s)] : []),
            '--backend',
            'wasm',
            '--out',
            `${dir}/clip-shards-${s}`,
          ]),
        ),
      ),
    );
    expect(runs.map((r) => r.shards)).toEqual([1, 2, 3]);
    expect(new Set(runs.map((r) => r.weights_sha256)).size).toBe(1);
    expect(runs[0].weights_sha256).not.toBe((await undisturbed()).weights_sha256);
  }, 240_000);
});

describe('shares', () => {
  /** Share of the step micro-batches that went to `id`, in a run of two workers. */
  async function shareOf(id: string, other: string[], name: string): Promise<number> {
    const c = await coordinator(name, ['--min-workers', '2', '--batch-size', '128', '--max-steps', '20']);
    worker(c.url, 'steady');
    worker(c.url, id, ...other);
    const byWorker = expectOk(await c.done).micro_batches_by_worker as Record<string, number>;
    return byWorker[id] / (byWorker[id] + byWorker.steady);
  }

  it('two equal workers split the work about evenly, and one claiming 1 µs of compute per node gets no more than its fair share', async () => {
    // Loose bounds on a loaded machine; with shares set by reported compute, the liar took nearly everything.
    const twin = await shareOf('twin', [], 'equal');
    expect(twin).toBeGreaterThan(0.3);
    expect(twin).toBeLessThan(0.7);
    expect(await shareOf('liar', ['--fault-report-compute-s', '0.000001'], 'liar')).toBeLessThan(0.7);
  }, 180_000);
});
