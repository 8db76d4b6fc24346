/**
 * Where a sharded run starts again, checked where the weights alone cannot tell (a replay from an
 * older checkpoint ends with the same bits): a run checkpointed with --shards 3 resumes unsharded from
 * its newest checkpoint, and a shard SIGKILLed between two checkpoints rolls the run back to the newer
 * one and replays the steps since. Both end with the unsharded run's weights and sample ledger.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, listeningUrl, run, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { metricValues } from '../helpers/prometheus.js';
import { freePort, until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 600, 200);
// 600 samples in batches of 64: 10 steps an epoch (9 of 64, one of 24), a checkpoint at each
// epoch's end (steps 10 and 20) and at the run's end.
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
  '24',
  '--epochs',
  '5',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
const unsharded = runOnce([
  'train',
  ...config,
  '--workers',
  '2',
  '--backend',
  'wasm',
  '--out',
  `${dir}/unsharded`,
]);

describe('sharded runs start again from the right checkpoint', () => {
  it('checkpointed with --shards 3 at steps 10 and 12, resumed with none: from step 12, running exactly steps 12-23', async () => {
    const out = `${dir}/resume`;
    const half = config.map((a, i) => (config[i - 1] === '--max-steps' ? '12' : a));
    expectOk(
      await run(['train', ...half, '--workers', '2', '--shards', '3', '--backend', 'wasm', '--out', out]),
    );
    const resumed = await run([
      'train',
      '--resume',
      out,
      '--max-steps',
      '24',
      '--workers',
      '1',
      '--backend',
      'wasm',
      '--json',
    ]);
    const summary = expectOk(resumed);
    expect(resumed.stderr).toMatch(/resuming mnist-small run \S+ from step 12 \(.*ckpt-000000012\.gfck\)/);
    // Steps 12-19 are 7 × 64 + 24 samples (step 19 ends epoch 1), steps 20-23 are 4 × 64: 728 in all
    // (from step 10 it would be 856).
    expect(summary).toMatchObject({ steps: 24, samples: 728 });
    expect(summary.accounting).toMatchObject({ samples: 728, duplicate_samples: 0, missing_samples: 0 });
    expect(summary.weights_sha256).toBe((await unsharded()).weights_sha256);
  }, 180_000);

  it('a shard SIGKILLed at step 12 or later: the run rolls back to step 10, replays the steps since on a replacement, and ends with the same weights', async () => {
    const out = `${dir}/kill`;
    const metricsPort = await freePort();
    const coordinator = start([
      'coordinator',
      ...config,
      '--port',
      '0',
      '--metrics-port',
      String(metricsPort),
      '--shards',
      '2',
      '--min-workers',
      '2',
      '--out',
      out,
    ]);
    const url = await listeningUrl(coordinator);
    const shard = (id: string) => start(['shard', '--connect', url, '--id', id]);
    const victim = shard('victim');
    shard('steady');
    // Slowed, so that steps 12 to 19 (between the checkpoints of steps 10 and 20) last over a second.
    for (const id of ['w1', 'w2'])
      start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--fault-slow-ms', '150']);
    const stepsAtKill = await until(
      'step 12',
      async () => {
        const steps = metricValues(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).get(
          'gradfleet_steps_total',
        );
        return steps !== undefined && steps >= 12 && steps;
      },
      120_000,
    );
    victim.child.kill('SIGKILL');
    expect(stepsAtKill).toBeLessThan(20); // between the two checkpoints, or this test shows nothing
    await coordinator.waitFor(/rolling back to step 10 \(.*ckpt-000000010\.gfck\)/);
    shard('replacement');
    const summary = expectOk(await coordinator.done);
    expect(summary.replayed_steps).toBeGreaterThanOrEqual(stepsAtKill - 10);
    expect(summary.accounting).toEqual((await unsharded()).accounting);
    expect(summary.weights_sha256).toBe((await unsharded()).weights_sha256);
  }, 180_000);
});
