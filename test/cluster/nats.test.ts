/**
 * Training over NATS changes nothing: the same weights as over WebSockets, and the same weights
 * when a node of a 3-node NATS cluster dies under a worker mid-run (it fails over and resends).
 */
import { describe, expect, it } from 'vitest';
import { expectOk, run, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { natsRole, startCluster, startNats } from '../helpers/nats.js';
import { untilStep } from '../helpers/run-progress.js';

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
  '40',
  '--epochs',
  '5',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];

const overWs = runOnce(['train', ...config, '--workers', '2', '--backend', 'wasm', '--out', `${dir}/ws`]);
const wsSha = async () => (await overWs()).weights_sha256;

describe('training over NATS', () => {
  it('2 workers over NATS end with the same weights as over WebSockets', async () => {
    const server = await startNats('single', []);
    const summary = expectOk(
      await run([
        'train',
        ...config,
        '--workers',
        '2',
        '--backend',
        'wasm',
        '--transport',
        'nats',
        '--nats-url',
        server.url,
        '--out',
        `${dir}/nats`,
      ]),
    );
    expect(summary.transport).toBe('nats');
    expect(summary.workers).toBe(2);
    expect(summary.weights_sha256).toBe(await wsSha());
    await server.stop();
  }, 120_000);

  it('3-node cluster: coordinator on A, workers on B and C; B dies mid-run, its worker fails over, same weights', async () => {
    const [a, b, c] = await startCluster(dir);
    // The shipped config's users and subject permissions (deploy/nats/cluster.conf), on its default subject.
    const nats = (server: string) => ['--transport', 'nats', '--nats-url', server];
    const [asCoordinator, asWorker] = [natsRole('coordinator'), natsRole('worker')];
    const coordinator = start(
      [
        'coordinator',
        ...config,
        ...nats(a.url),
        ...asCoordinator.args,
        '--min-workers',
        '2',
        '--no-metrics',
        '--out',
        `${dir}/failover`,
        '--checkpoint-every',
        '1',
      ],
      asCoordinator.env,
    );
    await coordinator.waitFor(/coordinator listening on/);
    // Worker B knows only node B: it learns the other nodes from the cluster, as NATS clients do.
    const workerB = start(
      ['worker', ...nats(b.url), ...asWorker.args, '--backend', 'wasm', '--id', 'on-b'],
      asWorker.env,
    );
    const workerC = start(
      ['worker', ...nats(c.url), ...asWorker.args, '--backend', 'wasm', '--id', 'on-c'],
      asWorker.env,
    );
    await coordinator.waitFor(/worker on-b joined/);
    await coordinator.waitFor(/worker on-c joined/);
    await untilStep(`${dir}/failover`, 3);
    await b.stop('SIGKILL');
    const summary = expectOk(await coordinator.done);
    expect(await workerB.waitFor(/NATS reconnected/)).toBeTruthy();
    expect(summary.steps).toBe(40);
    expect(summary.workers).toBe(2);
    expect(summary.weights_sha256).toBe(await wsSha());
    expect((await workerB.done).status).toBe(0);
    expect((await workerC.done).status).toBe(0);
  }, 180_000);

  it('a worker killed with SIGKILL over NATS (no socket to close) is found by the heartbeat; the survivor finishes with the same weights', async () => {
    const server = await startNats('loss', []);
    const out = `${dir}/nats-loss`;
    const join = ['--transport', 'nats', '--nats-url', server.url, '--nats-subject', 'loss'];
    const c = start([
      'coordinator',
      ...config,
      ...join,
      '--no-metrics',
      '--min-workers',
      '2',
      '--checkpoint-every',
      '1',
      '--heartbeat',
      '0.25',
      '--heartbeat-timeout',
      '2',
      '--out',
      out,
    ]);
    await c.waitFor(/coordinator listening on/);
    const [victim] = ['victim', 'survivor'].map((id) =>
      start(['worker', ...join, '--backend', 'wasm', '--id', id, '--fault-slow-ms', '30']),
    );
    await untilStep(out, 5);
    victim.child.kill('SIGKILL');
    await c.waitFor(/worker victim left: no heartbeat/);
    start(['worker', ...join, '--backend', 'wasm', '--id', 'relief']);
    const summary = expectOk(await c.done);
    expect(summary.weights_sha256).toBe(await wsSha());
    expect(summary.accounting).toMatchObject({ duplicate_samples: 0, missing_samples: 0 });
    await server.stop();
  }, 120_000);
});
