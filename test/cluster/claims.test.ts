/**
 * The README's "Faults, security and limits" promises that had no test of their own, each shown on
 * a real cluster: late results dropped, heartbeats through a long share, the paused metric, the
 * idle worker's probe, --no-reconnect, --max-connections, the 16 KiB pre-authentication limit, and
 * a secret that never shows in /metrics.
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { expectOk, listeningUrl, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { metricValues } from '../helpers/prometheus.js';
import { freePort, until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 512, 100);
const STEPS = 12;
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '4',
  '--max-steps',
  String(STEPS),
  '--epochs',
  '5',
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
/** Two steps on the synthetic backend, whose pseudo-gradients depend on (seed, step, micro-batch) alone. */
const syntheticTwoSteps = runOnce([
  'train',
  ...config,
  '--max-steps',
  '2',
  '--workers',
  '1',
  '--backend',
  'synthetic',
  '--synthetic-ms',
  '1',
  '--out',
  `${dir}/undisturbed-synthetic-2`,
]);

async function coordinator(name: string, extra: string[] = [], env: Record<string, string> = {}) {
  const metricsPort = await freePort();
  const p = start(
    [
      'coordinator',
      ...config,
      '--port',
      '0',
      '--metrics-port',
      String(metricsPort),
      '--out',
      `${dir}/${name}`,
      ...extra,
    ],
    env,
  );
  const url = await listeningUrl(p);
  const metricsText = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const metrics = async () => metricValues(await metricsText());
  return { ...p, url, metrics, metricsText };
}
const worker = (url: string, id: string, extra: string[] = [], env: Record<string, string> = {}) =>
  start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, ...extra], env);

/** A raw WebSocket peer that speaks no gradfleet at all; resolves once open (or refused). */
const rawPeer = (url: string) =>
  new Promise<WebSocket>((resolve) => {
    const s = new WebSocket(url, { perMessageDeflate: false });
    s.once('open', () => resolve(s));
    s.once('error', () => resolve(s));
  });

describe('faults', () => {
  it('a worker past --step-deadline loses its share; what it sends late is dropped as late_result; same weights', async () => {
    // Timer-paced synthetic workers, so that a loaded machine's CPU does not move the timeline. Step 0
    // splits the 4 micro-batches 2:2 (no speeds yet). prompt's half takes 2 s, 1 s inside the 3 s
    // deadline; tardy's takes 4 s: past it by 1 s, so its half goes to prompt at 3 s, which is busy
    // with it until 5 s; tardy's late node arrives at 4 s, 1 s into that: a step still in progress.
    const c = await coordinator('late', ['--min-workers', '2', '--step-deadline', '3', '--max-steps', '2']);
    const synthetic = (id: string, ms: number) =>
      start([
        'worker',
        '--connect',
        c.url,
        '--backend',
        'synthetic',
        '--synthetic-ms',
        String(ms),
        '--id',
        id,
      ]);
    synthetic('prompt', 1000);
    synthetic('tardy', 2000);
    const summary = expectOk(await c.done);
    expect(c.log()).toMatch(/tardy missed the 3 s deadline/);
    expect(summary.rejected_frames.late_result).toBeGreaterThanOrEqual(1);
    const reference = await syntheticTwoSteps();
    expect(summary.weights_sha256).toBe(reference.weights_sha256);
    expect(summary.accounting).toEqual(reference.accounting);
  }, 120_000);

  it('heartbeats flow while a worker computes a share far longer than the heartbeat timeout', async () => {
    // A share of 16 timer-paced micro-batches of 200 ms (the synthetic backend) lasts at least 3.2 s
    // on any machine, over 3 × the 1 s timeout; 1 s leaves a loaded machine's stalls room. That a
    // worker computing for real yields between micro-batches, so that its heartbeats go out, is
    // test/worker/compute.test.ts's.
    const c = await coordinator('long-share', [
      '--min-workers',
      '1',
      '--heartbeat',
      '0.2',
      '--heartbeat-timeout',
      '1',
      '--batch-size',
      '512',
      '--micro-batch',
      '32',
      '--max-steps',
      '2',
    ]);
    start([
      'worker',
      '--connect',
      c.url,
      '--backend',
      'synthetic',
      '--synthetic-ms',
      '200',
      '--id',
      'patient',
    ]);
    const summary = expectOk(await c.done);
    expect(summary.steps).toBe(2);
    console.log(
      `long share: ${summary.phases_s_per_step.gather.toFixed(2)} s per step against a 1 s heartbeat timeout`,
    );
    // the share did outlast the timeout, three times over
    expect(summary.phases_s_per_step.gather).toBeGreaterThan(3 * 1);
    expect(c.log()).not.toMatch(/no heartbeat/);
    expect(c.log()).not.toMatch(/patient left: (?!training finished)/);
  }, 120_000);

  it('below --min-workers the run pauses (gradfleet_paused 1) and resumes when a worker joins (0)', async () => {
    const c = await coordinator('paused', ['--min-workers', '2', '--checkpoint-every', '1']);
    const doomed = worker(c.url, 'doomed', ['--fault-slow-ms', '100']);
    worker(c.url, 'steady', ['--fault-slow-ms', '100']);
    await c.waitFor(/worker steady joined/);
    expect((await c.metrics()).get('gradfleet_paused')).toBe(0);
    await until('a step', async () => (await c.metrics()).get('gradfleet_steps_total')! >= 2);
    doomed.child.kill('SIGKILL');
    await c.waitFor(/paused at step \d+: 1 of 2 workers ready/);
    expect((await c.metrics()).get('gradfleet_paused')).toBe(1);
    const stepsWhilePaused = (await c.metrics()).get('gradfleet_steps_total');
    await new Promise((r) => setTimeout(r, 1000));
    expect((await c.metrics()).get('gradfleet_steps_total')).toBe(stepsWhilePaused);
    worker(c.url, 'rescuer');
    await c.waitFor(/resumed with 2 workers/);
    expect((await c.metrics()).get('gradfleet_paused')).toBe(0);
    const summary = expectOk(await c.done);
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
  }, 120_000);

  it('a worker left idle 3 steps gets one micro-batch, so that its speed is measured again', async () => {
    // Two micro-batches a step: by speed both go to the quick worker, except the slow one's probes.
    const c = await coordinator('probe', [
      '--min-workers',
      '2',
      '--batch-size',
      '32',
      '--max-steps',
      '24',
      '--epochs',
      '5',
    ]);
    worker(c.url, 'quick');
    worker(c.url, 'slow', ['--fault-slow-ms', '300']);
    await until(
      'steps under way',
      async () => (await c.metrics()).get('gradfleet_steps_total')! >= 20,
      60_000,
    );
    const m = await c.metrics();
    const share = (w: string) => m.get(`gradfleet_worker_microbatches_total{worker="${w}"}`) ?? 0;
    const steps = m.get('gradfleet_steps_total')!;
    console.log(`probe: after ${steps} steps, quick ${share('quick')}, slow ${share('slow')} micro-batches`);
    expect(share('quick') + share('slow')).toBe(2 * steps);
    // Idle for 3 steps, then probed: about one step in four, never none, never most.
    expect(share('slow')).toBeGreaterThanOrEqual(Math.floor(steps / 4) - 1);
    expect(share('slow')).toBeLessThan(share('quick'));
    expectOk(await c.done);
  }, 120_000);

  it('--no-reconnect: a worker exits when its coordinator goes away instead of waiting for it', async () => {
    const c = await coordinator('no-reconnect', [
      '--min-workers',
      '1',
      '--epochs',
      '50',
      '--max-steps',
      '100000',
    ]);
    const w = worker(c.url, 'once', ['--no-reconnect']);
    const keen = worker(c.url, 'keen', ['--connect-timeout', '60']);
    await c.waitFor(/worker once joined/);
    await c.waitFor(/worker keen joined/);
    c.child.kill('SIGKILL');
    const exited = await Promise.race([w.done, new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
    expect(exited, 'the --no-reconnect worker was still running 15 s later').not.toBeNull();
    expect(exited!.status).toBe(1);
    expect(exited!.stderr).not.toMatch(/reconnecting/);
    // Without the flag it waits for the coordinator to come back.
    await keen.waitFor(/reconnecting to/);
    expect(keen.child.exitCode).toBeNull();
    keen.child.kill();
  }, 60_000);
});

describe('limits', () => {
  it('--max-connections: connections past it are refused and counted; a worker gets in once one closes', async () => {
    // Two workers hold both connections (slowed, so the run outlasts the test's moves).
    const c = await coordinator('max-connections', [
      '--min-workers',
      '1',
      '--max-connections',
      '2',
      '--epochs',
      '50',
      '--max-steps',
      '40',
    ]);
    const holders = [
      worker(c.url, 'holder-1', ['--fault-slow-ms', '100']),
      worker(c.url, 'holder-2', ['--fault-slow-ms', '100']),
    ];
    await c.waitFor(/worker holder-1 joined/);
    await c.waitFor(/worker holder-2 joined/);
    const third = worker(c.url, 'third', ['--connect-timeout', '60']);
    await c.waitFor(/refused a connection from .*: .*2/);
    expect(
      (await c.metrics()).get('gradfleet_rejected_messages_total{reason="too_many_connections"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(c.log()).not.toMatch(/worker third joined/);
    holders[0].child.kill('SIGKILL'); // a slot frees up: the third gets in on a retry
    await c.waitFor(/worker third joined/);
    const summary = expectOk(await c.done);
    expect(summary.steps).toBe(40);
    expect(summary.rejected_frames.too_many_connections).toBeGreaterThanOrEqual(1);
    expect((await third.done).status).toBe(0);
  }, 120_000);

  it('a frame over 16 KiB before authentication is refused as too_large, while an admitted worker sends megabytes', async () => {
    const secretFile = `${dir}/secret`;
    writeFileSync(secretFile, 'a-secret-for-the-pre-auth-limit-test\n');
    const c = await coordinator('pre-auth', ['--min-workers', '1', '--secret-file', secretFile]);
    const peer = await rawPeer(c.url);
    peer.send(new Uint8Array(16 * 1024 + 1));
    await until(
      'the refusal to be counted',
      async () =>
        ((await c.metrics()).get('gradfleet_rejected_messages_total{reason="too_large"}') ?? 0) >= 1,
    );
    expect(c.log()).toMatch(/too_large/);
    peer.terminate();
    worker(c.url, 'admitted', ['--secret-file', secretFile]);
    const summary = expectOk(await c.done);
    expect(summary.steps).toBe(STEPS); // its gradients (243 kB each) were past 16 KiB and accepted
    expect(summary.rejected_frames.too_large).toBe(1);
  }, 120_000);

  it("the secret never appears in the coordinator's or a worker's /metrics, nor in their logs", async () => {
    const SECRET = 'never-print-me-5d1c0e7b9a';
    const env = { GRADFLEET_SECRET: SECRET };
    const workerPort = await freePort();
    const c = await coordinator('secret-metrics', ['--min-workers', '1'], env);
    const w = worker(c.url, 'keeper', ['--metrics-port', String(workerPort)], env);
    await c.waitFor(/worker keeper joined/);
    await until('a step', async () => (await c.metrics()).get('gradfleet_steps_total')! >= 1);
    const texts = [
      await c.metricsText(),
      await (await fetch(`http://127.0.0.1:${workerPort}/metrics`)).text(),
    ];
    for (const text of texts) expect(text).toMatch(/gradfleet_build_info/);
    const summary = expectOk(await c.done);
    await w.done;
    for (const text of [...texts, c.log(), w.log(), JSON.stringify(summary)])
      expect(text).not.toContain(SECRET);
  }, 120_000);
});
