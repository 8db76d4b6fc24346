/**
 * Workers that hold the secret and lie (worker/lie-modes.ts), on a real cluster: with --verify-fraction each
 * lie is caught by a spot check, the liar is evicted and banned, its unchecked work is undone, and the run
 * ends with the honest run's bits.
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
  '12',
  '--epochs',
  '1',
  '--eval-chunk',
  '20',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];

const honest = runOnce(['train', ...config, '--workers', '2', '--backend', 'wasm', '--out', `${dir}/honest`]);

/**
 * A coordinator with `honestWorkers` honest workers and one liar; resolves with its summary and log. The
 * honest ones start once the log shows `honestAfter`.
 */
async function hostileRun(
  name: string,
  liarFlags: string[],
  honestWorkers: number,
  extra: string[],
  honestAfter = /worker liar joined/,
) {
  const c = start([
    'coordinator',
    ...config,
    '--port',
    '0',
    '--no-metrics',
    '--out',
    `${dir}/${name}`,
    ...extra,
  ]);
  const url = await listeningUrl(c);
  const worker = (id: string, ...flags: string[]) =>
    start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--data-dir', dir, ...flags]);
  // The liar in first, so that it has work from the first step even when a loaded machine starts it last.
  const liar = worker('liar', ...liarFlags);
  await c.waitFor(honestAfter);
  for (let i = 1; i <= honestWorkers; i++) worker(`honest-${i}`);
  const summary = expectOk(await c.done);
  return { summary, log: c.log(), liar: await liar.done };
}

/** A caught liar: named with the evidence, evicted, refused for the run, the honest run's bits. */
async function expectCaught({ summary, log, liar }: Awaited<ReturnType<typeof hostileRun>>) {
  expect(summary.verification.evicted).toEqual(['liar']);
  expect(summary.verification.mismatches).toBeGreaterThanOrEqual(1);
  expect(summary.rejected_frames.verification_failed).toBeGreaterThanOrEqual(1);
  expect(log).toMatch(/worker liar lied: .* differ.* from the coordinator's own computation/);
  expect(liar.status).not.toBe(0);
  expect(liar.stderr).toMatch(/the coordinator refused us: caught lying/);
  // Undone work is replayed whole: every sample once, none missing.
  expect(summary.accounting.duplicate_samples).toBe(0);
  expect(summary.accounting.missing_samples).toBe(0);
  const back =
    /going back to step (\d+), before the first unchecked node of liar, and replaying (\d+) step/.exec(log);
  expect(summary.replayed_steps).toBe(back ? Number(back[2]) : 0);
  expect(summary.weights_sha256).toBe((await honest()).weights_sha256);
  return back;
}

for (const honestWorkers of [1, 2]) {
  describe(`one liar beside ${honestWorkers} honest worker(s)`, () => {
    for (const lie of ['flip-sign', 'scale', 'labels', 'loss']) {
      it(`${lie}: caught by a spot check, evicted and banned, the honest run's bits`, async () => {
        await expectCaught(
          await hostileRun(`${lie}-${honestWorkers}`, ['--fault-lie', lie], honestWorkers, [
            '--min-workers',
            '1',
            '--verify-fraction',
            '0.5',
          ]),
        );
      }, 180_000);
    }

    it("faked evaluation: caught at the evaluation (each worker's share has a checked chunk); its unchecked training is undone and replayed", async () => {
      const run = await hostileRun(`eval-${honestWorkers}`, ['--fault-lie', 'eval'], honestWorkers, [
        '--min-workers',
        '1',
        '--verify-fraction',
        '0.05',
      ]);
      expect(run.log).toMatch(/test chunk \d+ of evaluation \d+: its result differs/);
      const back = await expectCaught(run);
      // Nearly all it trained went in unchecked at 5%: that is all undone and replayed without it.
      expect(back).not.toBeNull();
      expect(run.summary.replayed_steps).toBeGreaterThan(0);
      expect(run.summary.test_accuracy).toBe((await honest()).test_accuracy);
    }, 180_000);

    it('sending nodes it was not given: evicted within 3 steps, and no step waits for its share', async () => {
      const { summary, log } = await hostileRun(
        `unassigned-${honestWorkers}`,
        ['--fault-lie', 'unassigned'],
        honestWorkers,
        // Spot checks on: a recheck that only the liar could do ends with it, not in a wait for a newcomer.
        ['--min-workers', '1', '--verify-fraction', '0.5'],
      );
      expect(log).toMatch(/worker liar evicted: 3 frames rejected within 30 s/);
      // Its frames, rejected: nodes of others (or of no node at all), each of some step.
      const peer = /worker liar joined from (ws [\d.:]+)/.exec(log)![1];
      const steps = log
        .split('\n')
        .filter((l) => l.includes(`rejected a frame from ${peer}:`))
        .map((l) => Number(/of step (\d+)/.exec(JSON.parse(l).msg)![1]));
      expect(steps.length).toBe(3);
      expect(Math.max(...steps) - Math.min(...steps)).toBeLessThan(3);
      // Its share went to the others at once, not when the step deadline ran out.
      expect(log).not.toMatch(/missed the .* deadline/);
      expect(summary.rejected_frames.banned).toBeGreaterThanOrEqual(1);
      expect(summary.weights_sha256).toBe((await honest()).weights_sha256);
    }, 180_000);

    it("stalling: each stalled share goes to the others at the step deadline; the honest run's bits", async () => {
      const { summary, log } = await hostileRun(
        `stall-${honestWorkers}`,
        ['--fault-slow-ms', '1500'],
        honestWorkers,
        ['--min-workers', String(honestWorkers + 1), '--step-deadline', '0.5'],
      );
      // The bound: a stalling worker costs each step it is given work in at most one deadline.
      expect(log).toMatch(/worker liar missed the 0.5 s deadline/);
      expect(summary.weights_sha256).toBe((await honest()).weights_sha256);
    }, 180_000);
  });
}

describe('a liar alone', () => {
  it('the coordinator recomputes what it picks, so the lone liar is caught; an honest newcomer finishes with the honest bits', async () => {
    const run = await hostileRun(
      'alone',
      ['--fault-lie', 'flip-sign'],
      1,
      ['--min-workers', '1', '--verify-fraction', '0.5'],
      /worker liar lied/,
    );
    expect(run.log).toMatch(/liar sent it; no other worker was ready to recompute it/);
    await expectCaught(run);
  }, 180_000);
});

describe('spot checks cost what they check', () => {
  it('the summary counts the nodes and chunks taken and recomputed; with no liar, the same bits', async () => {
    const summary = expectOk(
      await run([
        'train',
        ...config,
        '--workers',
        '2',
        '--backend',
        'wasm',
        '--verify-fraction',
        '0.25',
        '--out',
        `${dir}/checked`,
      ]),
    );
    const v = summary.verification;
    expect(v.evicted).toEqual([]);
    expect(v.mismatches).toBe(0);
    expect(v.nodes).toBeGreaterThanOrEqual(12);
    expect(v.nodes_checked).toBeGreaterThan(0);
    expect(v.nodes_checked).toBeLessThan(v.nodes);
    expect(v.chunks).toBe(10);
    expect(v.checked_share).toBeCloseTo((v.nodes_checked + v.chunks_checked) / (v.nodes + v.chunks), 10);
    expect(summary.weights_sha256).toBe((await honest()).weights_sha256);
  }, 180_000);
});
