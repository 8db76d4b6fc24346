/**
 * Chaos: three workers; one is killed with SIGKILL at a random step and another frozen with
 * SIGSTOP past the step deadline and the heartbeat timeout, then thawed (it reconnects by itself).
 * The run must end with the weights of an undisturbed run, every sample trained on exactly once.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, listeningUrl, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { randomInt, untilStep } from '../helpers/run-progress.js';
import { metricValues } from '../helpers/prometheus.js';
import { freePort, until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 300, 200);
const STEPS = 30;
const STEPS_PER_EPOCH = 5; // 300 samples in batches of 64: four full steps and one of 44
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
  '9',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];

const undisturbedRun = runOnce([
  'train',
  ...config,
  '--workers',
  '1',
  '--backend',
  'wasm',
  '--out',
  `${dir}/undisturbed`,
]);

describe('chaos', () => {
  it('SIGKILL one worker and SIGSTOP another past the deadline: same weights as an undisturbed run, exact sample accounting', async () => {
    const undisturbed = await undisturbedRun();

    const out = `${dir}/chaos`;
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
      '--checkpoint-every',
      '1',
      '--step-deadline',
      '1',
      '--heartbeat',
      '0.25',
      '--heartbeat-timeout',
      '2',
    ]);
    const url = await listeningUrl(c);
    // Slowed down so that the faults land mid-run rather than after it.
    const worker = (id: string) =>
      start([
        'worker',
        '--connect',
        url,
        '--backend',
        'wasm',
        '--id',
        id,
        '--fault-slow-ms',
        '60',
        '--connect-timeout',
        '5',
      ]);
    const [killed, frozen] = [worker('killed'), worker('frozen'), worker('steady')];

    const killAt = await untilStep(out, randomInt(2, 6));
    killed.child.kill('SIGKILL');
    const freezeAt = await untilStep(out, killAt + randomInt(1, 3));
    frozen.child.kill('SIGSTOP');
    await c.waitFor(/frozen missed the 1 s deadline/);
    await c.waitFor(/worker frozen left: no heartbeat/);
    frozen.child.kill('SIGCONT');

    const chaos = expectOk(await c.done);
    console.log(
      `chaos: SIGKILL after step ${killAt}, SIGSTOP after step ${freezeAt}; accounting ${JSON.stringify(chaos.accounting)}; rejected ${JSON.stringify(chaos.rejected_frames)}`,
    );
    expect(chaos.stopped).toBe('finished');
    expect(chaos.steps).toBe(STEPS);
    expect(chaos.weights_sha256).toBe(undisturbed.weights_sha256);
    expect(chaos.accounting).toEqual({
      samples: (STEPS / STEPS_PER_EPOCH) * 300,
      micro_batches: (STEPS / STEPS_PER_EPOCH) * 19,
      duplicate_samples: 0,
      missing_samples: 0,
      epochs_complete: STEPS / STEPS_PER_EPOCH,
    });
    expect(chaos.accounting).toEqual(undisturbed.accounting);
    // Whatever the frozen worker sent on its dropped link after thawing is ignored, not counted as bad input.
    expect(chaos.rejected_frames).toEqual({});
    expect((await killed.done).status).toBeNull(); // killed by the signal
  }, 180_000);

  it('a persistently slow worker is named a straggler and gets a smaller share; the weights do not change', async () => {
    const metricsPort = await freePort();
    const c = start([
      'coordinator',
      ...config,
      '--port',
      '0',
      '--metrics-port',
      String(metricsPort),
      '--out',
      `${dir}/straggler`,
      '--min-workers',
      '3',
      '--batch-size',
      '64',
    ]);
    const url = await listeningUrl(c);
    for (const id of ['quick-1', 'quick-2'])
      start(['worker', '--connect', url, '--backend', 'wasm', '--id', id]);
    start(['worker', '--connect', url, '--backend', 'wasm', '--id', 'laggard', '--fault-slow-ms', '150']);
    const line = await c.waitFor(/laggard is a straggler/);
    const { speed, median_speed: median } = JSON.parse(line);
    expect(speed * 2).toBeLessThan(median);
    // Its share after it was named: micro-batches each worker delivered over the next steps.
    const scrape = async () =>
      metricValues(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    const before = await scrape();
    expect(before.get('gradfleet_worker_straggler{worker="laggard"}')).toBe(1);
    expect(before.get('gradfleet_worker_straggler{worker="quick-1"}') ?? 0).toBe(0);
    const after = await until(
      'four more steps',
      async () => {
        const now = await scrape();
        return now.get('gradfleet_steps_total')! >= before.get('gradfleet_steps_total')! + 4 && now;
      },
      60_000,
    );
    const share = (w: string) =>
      (after.get(`gradfleet_worker_microbatches_total{worker="${w}"}`) ?? 0) -
      (before.get(`gradfleet_worker_microbatches_total{worker="${w}"}`) ?? 0);
    console.log(
      `straggler share over ${after.get('gradfleet_steps_total')! - before.get('gradfleet_steps_total')!} steps: laggard ${share('laggard')}, quick-1 ${share('quick-1')}, quick-2 ${share('quick-2')}`,
    );
    expect(share('quick-1') + share('quick-2')).toBeGreaterThan(0);
    for (const quick of ['quick-1', 'quick-2']) expect(share('laggard')).toBeLessThan(share(quick));
    const summary = expectOk(await c.done);
    expect(summary.weights_sha256).toBe((await undisturbedRun()).weights_sha256);
    expect(c.log()).not.toMatch(/quick-\d is a straggler/);
  }, 180_000);
});
