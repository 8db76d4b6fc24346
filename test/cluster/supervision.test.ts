/**
 * `gradfleet train` supervises its own workers: one killed (SIGKILL, as an OOM killer would) is
 * replaced and the run goes on meanwhile; one that keeps dying past its restarts is named, with
 * why, and the run finishes without it. Either way: the weights of an undisturbed run, every
 * sample trained on exactly once.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, runOnce, smallMnist, start, tempDir, type Started } from '../helpers/gradfleet.js';
import { randomInt, untilStep } from '../helpers/run-progress.js';
import { until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 960, 200);
const STEPS = 120;
const EPOCHS = 8; // 960 samples in batches of 64: 15 steps an epoch
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '9',
  '--epochs',
  String(EPOCHS),
  '--train',
  data.train,
  '--test',
  data.test,
  '--backend',
  'wasm',
  '--json',
];
const exactAccounting = {
  samples: EPOCHS * 960,
  micro_batches: EPOCHS * 60,
  duplicate_samples: 0,
  missing_samples: 0,
  epochs_complete: EPOCHS,
};

const undisturbedRun = runOnce(['train', ...config, '--workers', '1', '--out', `${dir}/undisturbed`]);

/** The pid of a local worker, from the line the supervisor logs when it starts one. */
async function pidOf(train: Started, worker: string): Promise<number> {
  const line = await train.waitFor(new RegExp(`"msg":"local worker ${worker} started \\(pid \\d+\\)"`));
  return JSON.parse(line).pid;
}

describe('supervised local workers', () => {
  it('replaces local workers killed at random steps: same weights as an undisturbed run, exact ledger, restarts counted', async () => {
    const out = `${dir}/killed`;
    const train = start([
      'train',
      ...config,
      '--workers',
      '3',
      '--out',
      out,
      '--checkpoint-every',
      '1',
      '--metrics-port',
      '0',
    ]);
    const metricsUrl = JSON.parse(await train.waitFor(/"msg":"metrics at /)).metrics as string;

    const firstKill = await untilStep(out, randomInt(3, 30));
    process.kill(await pidOf(train, 'local-2'), 'SIGKILL');
    await train.waitFor(/local worker local-2 exited \(signal SIGKILL\); restarting it as local-2-r1/);
    const secondKill = await untilStep(out, firstKill + randomInt(2, 20));
    process.kill(await pidOf(train, 'local-3'), 'SIGKILL');
    await train.waitFor(/local worker local-3 exited \(signal SIGKILL\); restarting it as local-3-r1/);
    const counted = await until(
      'the restarts metric',
      async () => {
        const text = await (await fetch(metricsUrl)).text();
        const values = [
          ...text.matchAll(/^gradfleet_local_worker_restarts_total\{worker="(local-\d)"\} (\d+)$/gm),
        ].map((m) => `${m[1]}=${m[2]}`);
        return values.includes('local-3=1') && values;
      },
      20_000,
    );

    const result = expectOk(await train.done);
    const undisturbed = await undisturbedRun();
    console.log(
      `supervision: SIGKILL after steps ${firstKill} and ${secondKill}; metric ${counted.join(' ')}; ${JSON.stringify(result.local_workers)}`,
    );
    expect(counted).toEqual(expect.arrayContaining(['local-2=1', 'local-3=1']));
    expect(result.stopped).toBe('finished');
    expect(result.steps).toBe(STEPS);
    expect(result.weights_sha256).toBe(undisturbed.weights_sha256);
    expect(result.accounting).toEqual(exactAccounting);
    expect(undisturbed.accounting).toEqual(exactAccounting);
    expect(result.local_workers).toEqual({
      restarts: 2,
      restarts_by_worker: { 'local-1': 0, 'local-2': 1, 'local-3': 1 },
      gave_up: [],
    });
    // The replacements joined and worked like any elastic worker.
    expect(train.log()).toMatch(/worker local-2-r1 joined/);
    expect(train.log()).toMatch(/worker local-3-r1 joined/);
  }, 240_000);

  it('a worker that keeps dying is named with its exit and last stderr lines, and the run finishes without it', async () => {
    const out = `${dir}/gave-up`;
    const train = start(
      [
        'train',
        ...config,
        '--workers',
        '2',
        '--out',
        out,
        '--checkpoint-every',
        '1',
        '--worker-restarts',
        '0',
      ],
      { GRADFLEET_WORKER_LOG_LEVEL: 'info' },
    );
    await untilStep(out, randomInt(3, 40));
    process.kill(await pidOf(train, 'local-1'), 'SIGKILL');
    const line = JSON.parse(
      await train.waitFor(/local worker local-1 exited \(signal SIGKILL\) and has used its 0 restart\(s\)/),
    );
    expect(line.level).toBe(50);
    expect(line.worker).toBe('local-1');
    expect(line.exit).toBe('signal SIGKILL');
    // Its own log lines (at info here) are what it last said before it died.
    expect(line.stderr_tail.length).toBeGreaterThan(0);
    expect(line.stderr_tail.join('\n')).toMatch(/"name":"worker local-1"/);

    const result = expectOk(await train.done);
    expect(result.weights_sha256).toBe((await undisturbedRun()).weights_sha256);
    expect(result.accounting).toEqual(exactAccounting);
    expect(result.local_workers.restarts).toBe(0);
    expect(result.local_workers.gave_up).toEqual([
      expect.objectContaining({ worker: 'local-1', exit: 'signal SIGKILL' }),
    ]);
  }, 240_000);

  it('a clean finish logs no warnings: workers told to stop exit by themselves', async () => {
    const r = await start(
      ['train', ...config, '--workers', '2', '--max-steps', '20', '--out', `${dir}/clean`],
      { GRADFLEET_LOG_LEVEL: 'debug' },
    ).done;
    expectOk(r);
    const levels = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.level >= 40)
      .map((l) => l.msg);
    expect(levels).toEqual([]);
    // Exit code 0 after the shutdown message: not killed by the SIGTERM that only stragglers get.
    expect(r.stderr).toMatch(/local worker local-1 exited \(code 0\)/);
    expect(r.stderr).toMatch(/local worker local-2 exited \(code 0\)/);
  }, 120_000);
});
