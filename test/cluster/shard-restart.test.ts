/**
 * `train --shards S` supervises its local shard reducers like its workers: one SIGKILLed mid-run (its
 * slice of Adam's moments lost with it) is restarted as shard-N-r1, the run rolls back to its newest
 * checkpoint and replays from there, and it ends with the weights and the ledger of an undisturbed,
 * unsharded run.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 640, 100);
/** 10 steps an epoch; checkpoints only at epoch ends (steps 10 and 20). */
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '13',
  '--epochs',
  '2',
  '--train',
  data.train,
  '--test',
  data.test,
  '--backend',
  'wasm',
  '--json',
];

interface LogLine {
  time: number;
  msg: string;
  [field: string]: unknown;
}

describe('local shard reducers, supervised', () => {
  it('a local shard SIGKILLed mid-epoch is restarted as shard-1-r1; the run rolls back to step 10, replays, and ends as the undisturbed run', async () => {
    const undisturbed = run(['train', ...config, '--workers', '1', '--out', `${dir}/undisturbed`]);
    const train = start([
      'train',
      ...config,
      '--workers',
      '2',
      '--shards',
      '2',
      '--metrics-port',
      '0',
      '--out',
      `${dir}/sharded`,
    ]);
    const metricsUrl = JSON.parse(await train.waitFor(/"msg":"metrics at /)).metrics as string;
    const victim = JSON.parse(await train.waitFor(/"msg":"local shard reducer shard-1 started \(pid \d+\)"/))
      .pid as number;
    // Two steps or more past the epoch's checkpoint, well before the next one: those steps are lost with the
    // shard's moments.
    const stepsBefore = await until(
      'step 12',
      async () => {
        const text = await (await fetch(metricsUrl)).text();
        const steps = Number(/^gradfleet_steps_total (\d+)$/m.exec(text)?.[1]);
        return steps >= 12 && steps;
      },
      60_000,
    );
    expect(stepsBefore).toBeLessThan(18);
    process.kill(victim, 'SIGKILL');

    const exited = JSON.parse(
      await train.waitFor(/"msg":"local shard reducer shard-1 exited \(signal SIGKILL\); restarting it as/),
    ) as LogLine;
    expect(exited.msg).toBe(
      'local shard reducer shard-1 exited (signal SIGKILL); restarting it as shard-1-r1 in 0.5 s (restart 1 of 3)',
    );
    const rolledBack = JSON.parse(await train.waitFor(/rolling back to step/)) as LogLine;
    expect(rolledBack.to_step).toBe(10);
    expect(rolledBack.from_step).toBeGreaterThanOrEqual(12);
    const replacement = JSON.parse(
      await train.waitFor(/"msg":"local shard reducer shard-1-r1 started \(pid \d+\)"/),
    ) as LogLine;
    const serving = JSON.parse(
      await train.waitFor(/"msg":"the reducer serves again: replaying from step 10"/),
    ) as LogLine;
    // The replay waits for the replacement, which waits out its backoff.
    expect(replacement.time - exited.time).toBeGreaterThanOrEqual(500 - 5);
    expect(serving.time).toBeGreaterThanOrEqual(replacement.time);

    const summary = expectOk(await train.done);
    const reference = expectOk(await undisturbed);
    expect(summary).toMatchObject({ stopped: 'finished', steps: 20, shards: 2, workers: 2 });
    expect(summary.replayed_steps).toBe((rolledBack.from_step as number) - 10);
    expect(summary.accounting).toEqual(reference.accounting);
    expect(summary.accounting).toMatchObject({ duplicate_samples: 0, missing_samples: 0 });
    expect(summary.weights_sha256).toBe(reference.weights_sha256);
    expect(train.log()).not.toMatch(/shard-2 exited|shard-1-r2/);
  }, 90_000);
});
