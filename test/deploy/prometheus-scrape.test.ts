/**
 * A real Prometheus, configured from the shipped deploy/prometheus files, scrapes a real run
 * (coordinator + 2 workers). Every dashboard query returns data, every alert rule evaluates, and
 * killing a worker makes GradfleetWorkerLost fire. A second run with a shard reducer (--shards 1)
 * answers the "Shard reducers" row, and killing the shard makes GradfleetShardLost fire.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Started, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { type PrometheusServer, startPrometheus } from '../helpers/prometheus.js';
import { until } from '../helpers/wait.js';

/** The alerting rules deploy/prometheus/alerts.yml ships, in its order. */
const ALERTS = [
  'GradfleetTrainingStuck',
  'GradfleetWorkerLost',
  'GradfleetShardLost',
  'GradfleetWorkerDown',
  'GradfleetCoordinatorDown',
  'GradfleetLossNotFinite',
  'GradfleetNonFiniteGradients',
  'GradfleetStragglerHigh',
  'GradfleetWorkerLied',
  'GradfleetFramesRejected',
];
const deploy = (path: string) => fileURLToPath(new URL(`../../deploy/${path}`, import.meta.url));
const dir = tempDir();
const data = smallMnist(dir, 1024, 500);
const processes: Started[] = [];
const prometheuses: PrometheusServer[] = [];
afterAll(async () => {
  for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await Promise.all(prometheuses.map((p) => p.stop()));
});

const urlIn = (line: string, scheme: string) =>
  new RegExp(`${scheme}://[0-9.]+:\\d+(/metrics)?`).exec(line)![0];

async function scrape(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  expect(res.status).toBe(200);
  return res.text();
}

const sampleValue = (exposition: string, name: string) =>
  Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(exposition)?.[1]);

/** The dashboard rows whose series exist only in a run with --shards, and with --local-steps. */
const SHARD_ROW = 'Shard reducers';
const LOCAL_ROW = 'Local steps';
const LATER_ROWS = [SHARD_ROW, LOCAL_ROW];

/**
 * Every PromQL expression in the dashboard, with the panel and the row it belongs to (a panel belongs to the
 * row above it).
 */
function dashboardQueries(): Array<{ row: string; panel: string; expr: string }> {
  const dashboard = JSON.parse(readFileSync(deploy('grafana/dashboards/gradfleet.json'), 'utf8'));
  let row = '';
  return dashboard.panels.flatMap((p: any) => {
    if (p.type === 'row') row = p.title;
    return (p.targets ?? []).map((t: any) => ({ row, panel: p.title, expr: t.expr }));
  });
}

async function emptyQueries(
  p: PrometheusServer,
  queries: Array<{ panel: string; expr: string }>,
): Promise<string[]> {
  const empty: string[] = [];
  for (const { panel, expr } of queries)
    if ((await p.query(expr)).length === 0) empty.push(`${panel}: ${expr}`);
  return empty;
}

const alertNames = (alerts: any[], state: string) =>
  alerts.filter((a) => a.state === state).map((a) => a.labels.alertname);

/** The shipped Prometheus config, pointed at this test's processes and sped up to 1 s. */
function testConfig(coordinator: string, workers: string[]) {
  const shipped = parse(readFileSync(deploy('prometheus/prometheus.yml'), 'utf8'));
  const hostPort = (url: string) => new URL(url).host;
  const targets: Record<string, string[]> = {
    'gradfleet-coordinator': [hostPort(coordinator)],
    'gradfleet-worker': workers.map(hostPort),
  };
  const jobs = shipped.scrape_configs.map((j: any) => j.job_name);
  expect(jobs).toEqual(expect.arrayContaining(Object.keys(targets)));
  return {
    ...shipped,
    global: { ...shipped.global, scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: shipped.rule_files.map((f: string) => deploy(`prometheus/${f}`)),
    scrape_configs: shipped.scrape_configs
      .filter((j: any) => targets[j.job_name])
      .map((j: any) => ({ job_name: j.job_name, static_configs: [{ targets: targets[j.job_name] }] })),
  };
}

describe('Prometheus scraping a real run', () => {
  it('serves /metrics during a step, answers every dashboard query, evaluates every rule and fires GradfleetWorkerLost', async () => {
    const coordinator = start([
      'coordinator',
      '--model',
      'mnist-small',
      '--batch-size',
      '32',
      '--micro-batch',
      '16',
      '--epochs',
      '500',
      '--eval-chunk',
      '250',
      '--train',
      data.train,
      '--test',
      data.test,
      '--port',
      '0',
      '--metrics-port',
      '0',
      '--min-workers',
      '2',
      '--out',
      `${dir}/run`,
      '--json',
    ]);
    processes.push(coordinator);
    const coordinatorMetrics = urlIn(await coordinator.waitFor(/metrics at/), 'http');
    const wsUrl = urlIn(await coordinator.waitFor(/coordinator listening on/), 'ws');
    const workers = ['steady', 'doomed'].map((id) =>
      start(['worker', '--connect', wsUrl, '--backend', 'wasm', '--id', id, '--metrics-port', '0']),
    );
    processes.push(...workers);
    const workerMetrics = await Promise.all(
      workers.map(async (w) => urlIn(await w.waitFor(/metrics at/), 'http')),
    );

    const p = await startPrometheus(dir, testConfig(coordinatorMetrics, workerMetrics));
    prometheuses.push(p);
    await until(
      'three targets up and a finished epoch',
      async () =>
        (await p.query('up == 1')).length === 3 &&
        (await p.query('gradfleet_test_accuracy_ratio')).length === 1,
    );

    // A stopped worker holds its share of the step: the step is in flight, and scrapes still answer.
    const doomed = workers[1];
    doomed.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 1500));
    const during = await scrape(coordinatorMetrics);
    await new Promise((r) => setTimeout(r, 1000));
    const later = await scrape(coordinatorMetrics);
    expect(sampleValue(later, 'gradfleet_steps_total')).toBe(sampleValue(during, 'gradfleet_steps_total'));
    expect(sampleValue(later, 'gradfleet_workers_connected')).toBe(2);
    doomed.child.kill('SIGCONT');
    await until(
      'steps to resume',
      async () =>
        sampleValue(await scrape(coordinatorMetrics), 'gradfleet_steps_total') >
        sampleValue(later, 'gradfleet_steps_total'),
    );
    // Let the 1m rate() windows hold several samples of the resumed run.
    await new Promise((r) => setTimeout(r, 3000));

    // The shard and local-steps rows are the next test's: their series do not exist without shard reducers
    // and local steps.
    const queries = dashboardQueries();
    for (const row of LATER_ROWS) expect(queries.filter((q) => q.row === row).length).toBeGreaterThan(0);
    expect(
      await emptyQueries(
        p,
        queries.filter((q) => !LATER_ROWS.includes(q.row)),
      ),
    ).toEqual([]);

    const rules = (await p.api('/api/v1/rules')).groups.flatMap((g: any) => g.rules);
    const shipped = parse(readFileSync(deploy('prometheus/alerts.yml'), 'utf8')).groups.flatMap((g: any) =>
      g.rules.map((r: any) => r.alert),
    );
    expect(shipped).toEqual(ALERTS);
    expect(rules.map((r: any) => r.name).sort()).toEqual([...ALERTS].sort());
    for (const rule of rules)
      expect({ rule: rule.name, health: rule.health, error: rule.lastError ?? '' }).toEqual({
        rule: rule.name,
        health: 'ok',
        error: '',
      });
    // An alert on a series that never exists would never fire: every series each rule reads has samples.
    const noData: string[] = [];
    for (const rule of rules) {
      for (const selector of new Set(String(rule.query).match(/\b(?:gradfleet_\w+|up)(?:\{[^}]*\})?/g))) {
        if ((await p.query(selector)).length === 0) noData.push(`${rule.name}: ${selector}`);
      }
    }
    expect(noData).toEqual([]);
    expect(alertNames((await p.api('/api/v1/alerts')).alerts, 'firing')).toEqual([]);

    doomed.child.kill('SIGKILL');
    await until('GradfleetWorkerLost to fire', async () =>
      alertNames((await p.api('/api/v1/alerts')).alerts, 'firing').includes('GradfleetWorkerLost'),
    );
    const lost = await p.query('gradfleet_workers_lost_total');
    expect(Number(lost[0].value[1])).toBe(1);

    coordinator.child.kill('SIGINT');
    const finished = await coordinator.done;
    expect(finished.status).toBe(0);
    expect(finished.json?.stopped).toBe('interrupted');
  }, 180_000);

  it('with --shards 1 and --local-steps 2: every query of the shard and local-steps rows answers; a SIGKILLed shard fires GradfleetShardLost, a replacement replays', async () => {
    const out = `${dir}/sharded`;
    const coordinator = start([
      'coordinator',
      '--model',
      'mnist-small',
      '--batch-size',
      '8',
      '--local-steps',
      '2',
      '--replicas',
      '4',
      '--epochs',
      '500',
      '--eval-chunk',
      '250',
      '--train',
      data.train,
      '--test',
      data.test,
      '--port',
      '0',
      '--metrics-port',
      '0',
      '--shards',
      '1',
      '--checkpoint-every',
      '5',
      '--out',
      out,
      '--json',
    ]);
    processes.push(coordinator);
    const coordinatorMetrics = urlIn(await coordinator.waitFor(/metrics at/), 'http');
    const wsUrl = urlIn(await coordinator.waitFor(/coordinator listening on/), 'ws');
    const shard = (id: string) => {
      const started = start(['shard', '--connect', wsUrl, '--id', id]);
      processes.push(started);
      return started;
    };
    const victim = shard('victim');
    const worker = start([
      'worker',
      '--connect',
      wsUrl,
      '--backend',
      'wasm',
      '--id',
      'w1',
      '--metrics-port',
      '0',
    ]);
    processes.push(worker);
    const workerMetrics = urlIn(await worker.waitFor(/metrics at/), 'http');

    const p = await startPrometheus(tempDir(), testConfig(coordinatorMetrics, [workerMetrics]));
    prometheuses.push(p);
    const shardQueries = dashboardQueries().filter((q) => LATER_ROWS.includes(q.row));
    // rate() over 1m needs two samples of a series: wait until every panel of the rows has them.
    await until(
      'every shard and local-steps panel to answer',
      async () => (await emptyQueries(p, shardQueries)).length === 0,
      60_000,
    );
    expect(Number((await p.query('gradfleet_shards_connected'))[0].value[1])).toBe(1);
    const phases = await p.query('gradfleet_shard_phase_seconds_count');
    expect(phases.map((s) => `${s.metric.shard} ${s.metric.phase}`).sort()).toEqual([
      'victim broadcast',
      'victim optimizer',
      'victim reduce',
    ]);
    // Gradient slices in, weights slices out: both directions of the worker link are counted.
    for (const series of ['gradfleet_shard_received_bytes_total', 'gradfleet_shard_sent_bytes_total']) {
      expect(Number((await p.query(`${series}{shard="victim"}`))[0].value[1]), series).toBeGreaterThan(0);
    }
    expect(alertNames((await p.api('/api/v1/alerts')).alerts, 'firing')).toEqual([]);

    victim.child.kill('SIGKILL');
    await coordinator.waitFor(/rolling back to step \d+/);
    await until('GradfleetShardLost to fire', async () =>
      alertNames((await p.api('/api/v1/alerts')).alerts, 'firing').includes('GradfleetShardLost'),
    );
    expect(Number((await p.query('gradfleet_shards_lost_total'))[0].value[1])).toBe(1);
    const lost = await scrape(coordinatorMetrics);
    expect(sampleValue(lost, 'gradfleet_shards_connected')).toBe(0);
    // A lost shard's gauge goes; its counters stay.
    expect(lost).not.toContain('gradfleet_shard_step_seconds{shard="victim"}');
    expect(lost).toContain('gradfleet_shard_received_bytes_total{shard="victim"}');

    shard('replacement');
    const replaying = sampleValue(lost, 'gradfleet_steps_total');
    await until('the replacement to take steps', async () => {
      const text = await scrape(coordinatorMetrics);
      return (
        sampleValue(text, 'gradfleet_shards_connected') === 1 &&
        sampleValue(text, 'gradfleet_steps_total') > replaying &&
        text.includes('gradfleet_shard_step_seconds{shard="replacement"}')
      );
    });
    const replayed = sampleValue(await scrape(coordinatorMetrics), 'gradfleet_replayed_steps_total');
    coordinator.child.kill('SIGINT');
    const exitWait = setTimeout(() => coordinator.child.kill('SIGKILL'), 60_000);
    const finished = await coordinator.done;
    clearTimeout(exitWait);
    expect(finished.status, `no exit within 60 s of SIGINT:\n${coordinator.log().slice(-3000)}`).toBe(0);
    // The counter and the summary agree on what the rollback undid.
    expect(finished.json?.replayed_steps).toBe(replayed);
  }, 180_000);
});
