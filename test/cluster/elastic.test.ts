/**
 * Membership over a run's life: workers joining mid-run take work, the cap on workers holds, and
 * a coordinator killed outright comes back with --resume while its workers reconnect by themselves.
 * Through all of it the weights stay those of an undisturbed run.
 */
import { readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectOk, listeningUrl, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { checkpointedStep, randomInt, untilStep } from '../helpers/run-progress.js';
import { freePort } from '../helpers/wait.js';
import { checkpointFileName } from '../../coordinator/checkpoint-store.js';

const dir = tempDir();
const data = smallMnist(dir, 300, 200);
// Long enough that a worker started mid-run on a loaded 2-core machine still joins before it ends.
const STEPS = 60;
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '9',
  '--max-steps',
  String(STEPS),
  '--epochs',
  '20',
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
  '1',
  '--backend',
  'wasm',
  '--out',
  `${dir}/undisturbed`,
]);

/** Slowed so that the run lasts long enough to be disturbed mid-way. */
const worker = (url: string, id: string, ...extra: string[]) =>
  start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--fault-slow-ms', '50', ...extra]);

describe('elastic membership', () => {
  it('a worker that joins mid-run gets the weights and a share of the work; one over --max-workers is refused and counted', async () => {
    const out = `${dir}/join`;
    const c = start([
      'coordinator',
      ...config,
      '--port',
      '0',
      '--no-metrics',
      '--out',
      out,
      '--min-workers',
      '1',
      '--max-workers',
      '2',
      '--checkpoint-every',
      '1',
    ]);
    const url = await listeningUrl(c);
    const first = worker(url, 'first');
    await untilStep(out, randomInt(3, 8));
    const late = worker(url, 'late');
    await c.waitFor(/worker late joined/);
    const extra = worker(url, 'extra', '--connect-timeout', '3');
    await c.waitFor(/cluster_full|--max-workers 2/);
    const summary = expectOk(await c.done);
    expect(summary.workers).toBe(2);
    expect(summary.rejected_frames.cluster_full).toBeGreaterThanOrEqual(1);
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
    expect(summary.accounting).toEqual((await undisturbed()).accounting);
    for (const w of [first, late]) expect((await w.done).status).toBe(0);
    const lateSteps = Number(/worker done after (\d+) steps/.exec((await late.done).stderr)?.[1]);
    expect(lateSteps).toBeGreaterThan(0);
    extra.child.kill();
  }, 180_000);

  it('a coordinator killed with SIGKILL resumes from its newest valid checkpoint (a torn one is skipped); workers reconnect by themselves; same weights', async () => {
    const out = `${dir}/resume`;
    const port = String(await freePort());
    const coordinator = (...args: string[]) =>
      start([
        'coordinator',
        '--port',
        port,
        '--no-metrics',
        '--min-workers',
        '2',
        '--checkpoint-every',
        '2',
        ...args,
      ]);
    const c1 = coordinator(...config, '--out', out);
    await c1.waitFor(/coordinator listening on/);
    const url = `ws://127.0.0.1:${port}`;
    const workers = [
      worker(url, 'a', '--connect-timeout', '60'),
      worker(url, 'b', '--connect-timeout', '60'),
    ];
    const killedAt = await untilStep(out, 2 * randomInt(3, 7));
    c1.child.kill('SIGKILL');
    await c1.done;

    // A checkpoint torn by the crash: cut the newest in half; the resume must fall back to the one before.
    const newest = checkpointedStep(out);
    const torn = join(out, 'checkpoints', checkpointFileName(newest));
    truncateSync(torn, Math.floor(readFileSync(torn).length / 2));

    const c2 = coordinator('--resume', out, '--json');
    const resumedFrom = Number(/from step (\d+)/.exec(await c2.waitFor(/resuming .* from step/))![1]);
    expect(resumedFrom).toBeLessThan(newest);
    const summary = expectOk(await c2.done);
    console.log(
      `coordinator killed at step ≥ ${killedAt}; newest checkpoint ${newest} torn; resumed from ${resumedFrom}; accounting ${JSON.stringify(summary.accounting)}`,
    );
    expect(c2.log()).toMatch(/skipp|corrupt|torn|checksum|truncated/i);
    expect(summary.steps).toBe(STEPS);
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
    expect(summary.accounting).toMatchObject({ duplicate_samples: 0, missing_samples: 0 });
    for (const w of workers) {
      const done = await w.done;
      expect(done.status).toBe(0);
      expect(done.stderr).toMatch(/reconnecting/);
    }
  }, 180_000);

  it('--auto-resume starts a run when --out is empty and continues it when the same command runs again', async () => {
    const out = `${dir}/auto`;
    const again = async (steps: string[], model = 'mnist-small') => {
      const c = start([
        'coordinator',
        ...config,
        '--port',
        '0',
        '--no-metrics',
        '--out',
        out,
        '--auto-resume',
        ...steps,
        '--model',
        model,
      ]);
      const url = await listeningUrl(c).catch(() => 'ws://0.0.0.0:1');
      start(['worker', '--connect', url, '--backend', 'wasm', '--id', 'w', '--connect-timeout', '3']);
      return c.done;
    };
    const first = expectOk(await again(['--max-steps', '10']));
    expect(first.steps).toBe(10);
    const second = await again([]);
    expect(second.stderr).toMatch(/resuming mnist-small run .* from step 10/);
    expect(expectOk(second).weights_sha256).toBe((await undisturbed()).weights_sha256);
    const wrong = await again([], 'mnist-cnn');
    expect(wrong.status).not.toBe(0);
    expect(wrong.stderr).toMatch(/is a mnist-small run, not mnist-cnn/);
  }, 180_000);
});
