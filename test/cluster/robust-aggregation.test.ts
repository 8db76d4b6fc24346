/**
 * Robust aggregation on a real cluster (real MNIST, real sockets). --outlier-factor: every verdict of
 * the recheck (confirmed, rejected, unverified) is run and counted in gradfleet_outlier_nodes_total;
 * a confirmed node keeps the undisturbed run's bits, a refuted one is rejected, naming its sender, with
 * the undisturbed bits and sample ledger. --max-grad-norm: the averaged gradient is clipped before Adam
 * (against a reference from the pure clip and Adam functions), with the same bits for any worker or
 * shard count. Shares follow the coordinator's own timing, not workers' claims.
 */
import { describe, expect, it } from 'vitest';
import { loadRunState } from '../../coordinator/run-outputs.js';
import { initialWeights } from '../../training/models/init.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { adamStep, createAdamState } from '../../training/optimizer/adam.js';
import { trainableRanges } from '../../training/optimizer/apply-update.js';
import { clipGradientNorm } from '../../training/optimizer/clipping.js';
import { norm } from '../helpers/backends.js';
import { expectOk, listeningUrl, run, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { metricValues } from '../helpers/prometheus.js';
import { freePort, until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 600, 200);
const STEPS = 8;
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
  String(STEPS),
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

/** A coordinator with its own metrics port (the default one may be another test's). */
async function coordinator(name: string, extra: string[]) {
  const metricsPort = await freePort();
  const p = start([
    'coordinator',
    ...config,
    '--port',
    '0',
    '--metrics-port',
    String(metricsPort),
    '--out',
    `${dir}/${name}`,
    ...extra,
  ]);
  const metrics = async () =>
    metricValues(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
  return { ...p, url: await listeningUrl(p), metrics };
}
type Coordinator = Awaited<ReturnType<typeof coordinator>>;

const worker = (url: string, id: string, ...extra: string[]) =>
  start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--data-dir', dir, ...extra]);

/** The last step: workers started with LEAVE leave when assigned it, before computing any of it. */
const LAST = STEPS - 1;
const LEAVE = ['--fault-exit-at-step', String(LAST)];

/**
 * gradfleet_outlier_nodes_total by verdict, read while the run waits in its last step with no worker
 * left (all started with LEAVE): steps 0 to LAST − 1 and their rechecks are done, and the endpoint is
 * still up (it closes with the run). Then a fresh worker joins and finishes the run, whose bits do
 * not depend on who computes.
 */
async function verdictsBeforeLastStep(c: Coordinator): Promise<Record<string, number | undefined>> {
  const m = await until(
    `step ${LAST} to wait with no worker left`,
    async () => {
      const m = await c.metrics();
      return m.get('gradfleet_steps_total') === LAST && m.get('gradfleet_workers_connected') === 0 && m;
    },
    90_000,
  );
  worker(c.url, 'finisher');
  return verdictsIn(m);
}

function verdictsIn(m: Map<string, number>): Record<string, number | undefined> {
  const count = (verdict: string) => m.get(`gradfleet_outlier_nodes_total{verdict="${verdict}"}`);
  return { confirmed: count('confirmed'), rejected: count('rejected'), unverified: count('unverified') };
}

/** The recheck's log lines for steps before LAST: verdict, step, the node's mean-gradient norm and the median. */
function flaggedInLog(log: string) {
  return [
    ...log.matchAll(
      /of step (\d+) from \S+ \(mean-gradient norm ([\d.e+-]+), median ([\d.e+-]+)\) is an outlier, ([^"]*?)[:(]/g,
    ),
  ]
    .map(([, step, nodeNorm, median, verdict]) => ({
      step: Number(step),
      norm: Number(nodeNorm),
      median: Number(median),
      verdict: verdict.startsWith('confirmed')
        ? 'confirmed'
        : verdict.startsWith('but no other')
          ? 'unverified'
          : verdict,
    }))
    .filter((f) => f.step < LAST);
}

describe('--outlier-factor', () => {
  it("with no poisoner: honest nodes above factor × median are rechecked, confirmed and kept, and the weights keep the undisturbed run's bits", async () => {
    // Factor 1: a step's largest node is usually above the median it is judged by (the step's own,
    // or with fewer than three nodes one taken with the run's recent norms) and is rechecked, while a
    // node below it never is. Ignoring the flag flags nothing; flagging every node flags those below.
    const c = await coordinator('checked', ['--min-workers', '3', '--outlier-factor', '1']);
    for (const id of ['a', 'b', 'c']) worker(c.url, id, ...LEAVE);
    const verdicts = await verdictsBeforeLastStep(c);
    const summary = expectOk(await c.done);
    const flagged = flaggedInLog(c.log());
    console.log(`outliers with factor 1: ${JSON.stringify(verdicts)} in ${LAST} steps`);
    expect(verdicts.confirmed).toBeGreaterThanOrEqual(1);
    expect(verdicts).toMatchObject({ rejected: 0, unverified: 0 });
    expect(flagged.map((f) => f.verdict)).toEqual(Array(verdicts.confirmed ?? 0).fill('confirmed'));
    for (const f of flagged) expect(f.norm, `step ${f.step}`).toBeGreaterThanOrEqual(f.median);
    expect(summary.rejected_frames).toEqual({});
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
    expect(summary.accounting).toEqual((await undisturbed()).accounting);
  }, 180_000);

  it('a node scaled ×1000 is recomputed by another worker, rejected as an outlier naming its sender, and the run ends with the undisturbed bits and ledger', async () => {
    const c = await coordinator('poisoned', ['--min-workers', '3', '--outlier-factor', '4']);
    worker(c.url, 'honest-1', ...LEAVE);
    worker(c.url, 'honest-2', ...LEAVE);
    worker(c.url, 'poisoner', '--fault-scale-at-step', '3', ...LEAVE);
    expect(await verdictsBeforeLastStep(c)).toEqual({ confirmed: 0, rejected: 1, unverified: 0 });
    const summary = expectOk(await c.done);
    expect(summary.rejected_frames).toEqual({ outlier: 1 });
    expect(c.log()).toMatch(
      /node \[\d+, \d+\) of step 3 from poisoner .* differs from another worker's recomputation/,
    );
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
    expect(summary.accounting).toEqual((await undisturbed()).accounting);
  }, 180_000);

  it('with no other worker to recompute it, the ×1000 node is kept, logged and counted as unverified', async () => {
    // Step 0 splits 2:2 (no speeds measured yet). The leaver exits when given its half, which goes
    // to the poisoner: two nodes from one worker, the first ×1000 (factor 1.5: at step 0 there are no
    // recent norms, so the median of two nodes is their mean), and nobody else to recompute it. With
    // one worker of --min-workers 2 left, the run then waits before step 1, its metrics up, until a
    // third worker joins.
    const c = await coordinator('unverified', ['--min-workers', '2', '--outlier-factor', '1.5']);
    worker(c.url, 'poisoner', '--fault-scale-at-step', '0');
    worker(c.url, 'leaver', '--fault-exit-at-step', '0');
    const m = await until(
      'the run to wait before step 1',
      async () => {
        const m = await c.metrics();
        return m.get('gradfleet_steps_total') === 1 && m.get('gradfleet_paused') === 1 && m;
      },
      90_000,
    );
    expect(verdictsIn(m)).toEqual({ confirmed: 0, rejected: 0, unverified: 1 });
    worker(c.url, 'finisher');
    const summary = expectOk(await c.done);
    expect(c.log()).toMatch(
      /node \[\d, \d\) of step 0 from poisoner .* is an outlier, but no other worker can recompute it: kept/,
    );
    expect(summary.rejected_frames).toEqual({});
    // Kept: the ×1000 gradient went into Adam's moments, so the weights are not the undisturbed ones.
    expect(summary.weights_sha256).not.toBe((await undisturbed()).weights_sha256);
    expect(summary.accounting).toEqual((await undisturbed()).accounting);
  }, 180_000);

  it("with --shards 2: each shard reports its slices' Σg², the ×1000 node is recomputed, compared slice by slice on the shards, rejected, and the run ends with the undisturbed bits and ledger", async () => {
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
    expect(summary.accounting).toEqual((await undisturbed()).accounting);
  }, 180_000);
});

describe('--max-grad-norm', () => {
  it("clips the step's averaged gradient before Adam, not Adam's update after it: one step against the pure functions", async () => {
    // One step from the initial weights, clipped to 0.05 and not. Adam's first step is about
    // lr × sign(g) whatever g's scale, so clipping the gradient before it barely moves the result,
    // while clipping the update (norm ≈ lr × √n ≈ 0.25) to 0.05 would shrink every step fivefold.
    const [plain, clipped] = await Promise.all(
      [[], ['--max-grad-norm', '0.05']].map(async (clip, i) => {
        const out = `${dir}/one-step-${i}`;
        const args = ['train', ...config, ...clip, '--max-steps', '1', '--workers', '1', '--backend', 'wasm'];
        expectOk(await run([...args, '--out', out]));
        return (await loadRunState(out)).state;
      }),
    );
    expect([plain.step, clipped.step]).toEqual([1, 1]);
    const model = getModel('mnist-small');
    const ranges = trainableRanges(paramLayout(model));
    const adam = plain.config.adam;
    const w0 = initialWeights(model, 5);
    // Adam's first moment after one step is (1 − β1) g: the unclipped run's holds the averaged gradient.
    const g = Float32Array.from(plain.adam.m, (m) => m / (1 - adam.beta1));
    expect(norm(g)).toBeGreaterThan(4 * 0.05); // the bound does clip here
    expect(
      maxDiff(adamStep(w0, g, createAdamState(g.length), adam, ranges).weights, plain.weights),
    ).toBeLessThan(1e-7);

    // Clipped before Adam: the pure clip, then the pure Adam.
    const gClipped = g.slice();
    clipGradientNorm(gClipped, ranges, 0.05);
    const before = adamStep(w0, gClipped, createAdamState(g.length), adam, ranges).weights;
    // Clipped after Adam: the unclipped step's update, scaled to norm 0.05.
    const update = plain.weights.map((w, i) => w - w0[i]);
    const after = w0.map((w, i) => w + update[i] * (0.05 / norm(update)));

    // The run's moment holds the clipped gradient (norm 0.05), and its weights are the reference's.
    expect(norm(clipped.adam.m) / (1 - adam.beta1)).toBeCloseTo(0.05, 6);
    expect(maxDiff(clipped.weights, before)).toBeLessThan(1e-7);
    // The two readings are far apart here, so the match above tells them apart.
    expect(maxDiff(before, after)).toBeGreaterThan(1e-4);
    expect(maxDiff(clipped.weights, after)).toBeGreaterThan(1e-4);
  }, 120_000);

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

/** The largest |a − b| over two whole vectors of mnist-small's weights. */
function maxDiff(a: Float32Array, b: Float32Array): number {
  expect([a.length, b.length]).toEqual([60_874, 60_874]);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('shares', () => {
  /**
   * Share of the step micro-batches that went to `id`, in a run of two workers on the synthetic
   * backend: each micro-batch takes --synthetic-ms on a timer, so a worker's speed is what its flags
   * say and not what CPU it gets on a loaded machine.
   */
  async function shareOf(id: string, other: string[], name: string): Promise<number> {
    const c = await coordinator(name, ['--min-workers', '2', '--batch-size', '128', '--max-steps', '20']);
    const synthetic = (wid: string, ...extra: string[]) =>
      start([
        'worker',
        '--connect',
        c.url,
        '--backend',
        'synthetic',
        '--id',
        wid,
        '--data-dir',
        dir,
        ...extra,
      ]);
    synthetic('steady', '--synthetic-ms', '40');
    synthetic(id, ...other);
    const byWorker = expectOk(await c.done).micro_batches_by_worker as Record<string, number>;
    return byWorker[id] / (byWorker[id] + byWorker.steady);
  }

  it('two equal workers split the work about evenly; one four times slower that claims 1 µs of compute per node gets less than the steady one', async () => {
    const [twin, liar] = await Promise.all([
      shareOf('twin', ['--synthetic-ms', '40'], 'equal'),
      // By the coordinator's clock it tends to a fifth; by its claim it would take nearly everything.
      shareOf('liar', ['--synthetic-ms', '160', '--fault-report-compute-s', '0.000001'], 'liar'),
    ]);
    console.log(`shares: twin ${twin.toFixed(2)}, slow liar ${liar.toFixed(2)}`);
    // Equal by their timers, whatever CPU each gets: neither is left with under 30%.
    expect(Math.abs(twin - 0.5)).toBeLessThan(0.2);
    // Relations, not a band: less than the steady worker, and less than an honest equal one.
    expect(liar).toBeLessThan(0.5);
    expect(liar).toBeLessThan(twin);
  }, 180_000);
});
