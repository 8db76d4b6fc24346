/**
 * The metrics' math and exposition, without a cluster: straggler ratio, gradient norm, what /metrics shows
 * when.
 */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.js';
import { serveMetrics } from '../../common/metrics-server.js';
import type { StepReport } from '../../coordinator/hooks.js';
import type { ShardReport } from '../../coordinator/shard-set.js';
import { CoordinatorMetrics } from '../../coordinator/metrics.js';
import { median, stragglerRatio } from '../../coordinator/stragglers.js';
import type { WorkerSession } from '../../coordinator/worker-pool.js';
import { gradientNorm } from '../../training/optimizer/gradient-norm.js';

const session = (id: string, backend = 'wasm') => ({ id, backend }) as WorkerSession;

function stepReport(overrides: Partial<StepReport> = {}): StepReport {
  return {
    position: { step: 9, epoch: 0, stepInEpoch: 9 },
    stepsPerEpoch: 40,
    samples: 64,
    epochSamples: 2560,
    loss: 0.5,
    accuracy: 0.75,
    workers: 2,
    learningRate: 0.001,
    gradientNorm: () => 2.5,
    seconds: { total: 0.2, gather: 0.15, reduce: 0.02, optimizer: 0.02, broadcast: 0.01 },
    workerSeconds: new Map([
      ['a', 0.1],
      ['b', 0.15],
    ]),
    computeSeconds: new Map([
      ['a', 0.08],
      ['b', 0.12],
    ]),
    workerMicroBatches: new Map([
      ['a', 3],
      ['b', 1],
    ]),
    workerSpeeds: new Map([
      ['a', 40],
      ['b', 27],
    ]),
    gradientValues: { duringBackward: 300, afterBackward: 20 },
    buckets: [],
    ...overrides,
  };
}

const line = (text: string, name: string) =>
  text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));

describe('straggler ratio', () => {
  it('is the slowest over the median, and 1 for a balanced or single worker', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(stragglerRatio([0.5])).toBe(1);
    expect(stragglerRatio([0.2, 0.2, 0.2])).toBe(1);
    expect(stragglerRatio([1, 1, 4])).toBe(4);
    expect(stragglerRatio([1, 3])).toBe(1.5);
  });
});

describe('gradient norm', () => {
  it('sums only the trainable ranges', () => {
    const g = new Float32Array([3, 4, 100, 100, 12]);
    expect(gradientNorm(g, [{ offset: 0, size: 2 }])).toBe(5);
    expect(
      gradientNorm(g, [
        { offset: 0, size: 2 },
        { offset: 4, size: 1 },
      ]),
    ).toBe(13);
  });
});

describe('coordinator metrics', () => {
  it('shows progress, phases and per-worker figures after a step; test figures only after an evaluation', async () => {
    const m = new CoordinatorMetrics('mnist-small');
    const hooks = m.hooks();
    let text = await m.registry.metrics();
    expect(line(text, 'gradfleet_train_loss')).toBeUndefined();
    expect(line(text, 'gradfleet_rejected_messages_total{reason="non_finite"}')).toBe(
      'gradfleet_rejected_messages_total{reason="non_finite"} 0',
    );
    hooks.workerReady!(session('a'));
    hooks.workerReady!(session('b', 'tensorflow'));
    hooks.step!(stepReport());
    m.rejected('non_finite');
    text = await m.registry.metrics();
    expect(line(text, 'gradfleet_steps_total')).toBe('gradfleet_steps_total 1');
    expect(line(text, 'gradfleet_samples_total')).toBe('gradfleet_samples_total 64');
    expect(line(text, 'gradfleet_epoch_progress_ratio')).toBe('gradfleet_epoch_progress_ratio 0.25');
    expect(line(text, 'gradfleet_train_loss')).toBe('gradfleet_train_loss 0.5');
    expect(line(text, 'gradfleet_samples_per_second')).toBe('gradfleet_samples_per_second 320');
    expect(line(text, 'gradfleet_straggler_ratio')).toBe('gradfleet_straggler_ratio 1.2');
    expect(text).toContain('gradfleet_worker_step_seconds{worker="b"} 0.15');
    expect(text).toContain('gradfleet_step_phase_seconds_sum{phase="gather"} 0.15');
    expect(text).toContain('gradfleet_gradient_values_total{sent="during_backward"} 300');
    expect(text).toContain('gradfleet_gradient_values_total{sent="after_backward"} 20');
    expect(text).toContain('gradfleet_rejected_messages_total{reason="non_finite"} 1');
    expect(text).toContain('backend="tensorflow,wasm"');
    expect(line(text, 'gradfleet_workers_connected')).toBe('gradfleet_workers_connected 2');
    expect(line(text, 'gradfleet_test_accuracy_ratio')).toBeUndefined();

    hooks.evaluated!({ step: 40, samples: 2560, loss: 0.3, accuracy: 0.9 });
    hooks.workerLost!(session('b'), 'closed');
    text = await m.registry.metrics();
    expect(line(text, 'gradfleet_test_accuracy_ratio')).toBe('gradfleet_test_accuracy_ratio 0.9');
    expect(line(text, 'gradfleet_workers_lost_total')).toBe('gradfleet_workers_lost_total 1');
    expect(line(text, 'gradfleet_workers_connected')).toBe('gradfleet_workers_connected 1');
    expect(text).not.toContain('gradfleet_worker_step_seconds{worker="b"}');
    // Counters keep a departed worker's totals, so rate() over them stays right.
    expect(text).toContain('gradfleet_worker_compute_seconds_total{worker="b"} 0.12');
    expect(text).toContain('gradfleet_worker_microbatches_total{worker="a"} 3');
    expect(text).toContain('gradfleet_worker_microbatches_total{worker="b"} 1');
    // Synchronous steps show no local-steps series.
    expect(text).not.toContain('gradfleet_local_delta_norm');
    expect(text).not.toContain('gradfleet_local_outer_learning_rate');
  });

  it('a round of local steps: rounds, inner steps, the inner and outer learning rates, the delta norm', async () => {
    const m = new CoordinatorMetrics('mnist-small');
    const hooks = m.hooks();
    const round = stepReport({
      learningRate: 0.7,
      gradientNorm: () => 0.125,
      local: { innerSteps: 32, innerLearningRate: 0.002 },
    });
    hooks.step!(round);
    hooks.step!(round);
    const text = await m.registry.metrics();
    expect(line(text, 'gradfleet_local_rounds_total')).toBe('gradfleet_local_rounds_total 2');
    expect(line(text, 'gradfleet_local_inner_steps_total')).toBe('gradfleet_local_inner_steps_total 64');
    expect(line(text, 'gradfleet_local_outer_learning_rate')).toBe('gradfleet_local_outer_learning_rate 0.7');
    expect(line(text, 'gradfleet_learning_rate')).toBe('gradfleet_learning_rate 0.002');
    expect(line(text, 'gradfleet_local_delta_norm')).toBe('gradfleet_local_delta_norm 0.125');
    // The delta is not a gradient: the gradient norm's series stays out.
    expect(line(text, 'gradfleet_gradient_norm')).toBeUndefined();
  });
});

const shardReport = (
  shard: string,
  seconds: ShardReport['seconds'],
  bytesIn: number,
  bytesOut: number,
): ShardReport => ({
  type: 'reduced',
  shard,
  step: 3,
  version: 4,
  gradSquares: 1,
  seconds,
  bytesIn,
  bytesOut,
});

describe('shard reducer metrics', () => {
  it("are 0 in an unsharded run, then count each shard's phases and bytes; a lost shard's gauge goes and the rollback counts its steps", async () => {
    const m = new CoordinatorMetrics('mnist-small');
    const hooks = m.hooks();
    let text = await m.registry.metrics();
    // Present from the start, so alerts on them evaluate (and stay quiet) in a run without shards.
    expect(line(text, 'gradfleet_shards_connected')).toBe('gradfleet_shards_connected 0');
    expect(line(text, 'gradfleet_shards_lost_total')).toBe('gradfleet_shards_lost_total 0');
    expect(line(text, 'gradfleet_replayed_steps_total')).toBe('gradfleet_replayed_steps_total 0');
    expect(line(text, 'gradfleet_shard_step_seconds')).toBeUndefined();

    hooks.shardsConnected!(1);
    hooks.shardsConnected!(2);
    hooks.shardsReduced!([
      shardReport('s0', { reduce: 0.02, optimizer: 0.01, broadcast: 0.005 }, 1000, 400),
      shardReport('s1', { reduce: 0.5, optimizer: 0.25, broadcast: 0.125 }, 3000, 600),
    ]);
    hooks.shardsReduced!([
      shardReport('s0', { reduce: 0.03, optimizer: 0.01, broadcast: 0.005 }, 500, 400),
      shardReport('s1', { reduce: 0.5, optimizer: 0.25, broadcast: 0.125 }, 3000, 600),
    ]);
    text = await m.registry.metrics();
    expect(line(text, 'gradfleet_shards_connected')).toBe('gradfleet_shards_connected 2');
    // Histograms: two observations per shard and phase, their sums the reports' seconds.
    expect(text).toContain('gradfleet_shard_phase_seconds_count{shard="s0",phase="reduce"} 2');
    expect(text).toContain('gradfleet_shard_phase_seconds_sum{shard="s0",phase="reduce"} 0.05');
    expect(text).toContain('gradfleet_shard_phase_seconds_sum{shard="s1",phase="optimizer"} 0.5');
    expect(text).toContain('gradfleet_shard_phase_seconds_sum{shard="s1",phase="broadcast"} 0.25');
    expect(text).toContain('gradfleet_shard_phase_seconds_bucket{le="0.025",shard="s0",phase="reduce"} 1');
    // The gauge: the last step's three phases together.
    expect(text).toContain('gradfleet_shard_step_seconds{shard="s0"} 0.045');
    expect(text).toContain('gradfleet_shard_step_seconds{shard="s1"} 0.875');
    // Counters: the reports' bytes added up, each report carrying only its step's.
    expect(text).toContain('gradfleet_shard_received_bytes_total{shard="s0"} 1500');
    expect(text).toContain('gradfleet_shard_sent_bytes_total{shard="s0"} 800');
    expect(text).toContain('gradfleet_shard_received_bytes_total{shard="s1"} 6000');
    expect(text).toContain('gradfleet_shard_sent_bytes_total{shard="s1"} 1200');

    hooks.shardLost!('s1', 'closed');
    hooks.shardsConnected!(1);
    hooks.rolledBack!(3);
    hooks.rolledBack!(0);
    text = await m.registry.metrics();
    expect(line(text, 'gradfleet_shards_lost_total')).toBe('gradfleet_shards_lost_total 1');
    expect(line(text, 'gradfleet_shards_connected')).toBe('gradfleet_shards_connected 1');
    expect(line(text, 'gradfleet_replayed_steps_total')).toBe('gradfleet_replayed_steps_total 3');
    expect(text).not.toContain('gradfleet_shard_step_seconds{shard="s1"}');
    expect(text).toContain('gradfleet_shard_step_seconds{shard="s0"} 0.045');
    // Its totals stay, so rate() over them does not jump.
    expect(text).toContain('gradfleet_shard_received_bytes_total{shard="s1"} 6000');
    expect(text).toContain('gradfleet_shard_phase_seconds_count{shard="s1",phase="reduce"} 2');
  });
});

describe('metrics endpoint', () => {
  it('serves /metrics and /healthz, refuses other paths and methods, and names a busy port', async () => {
    const m = new CoordinatorMetrics('mnist-small');
    const endpoint = await serveMetrics(m.registry, { host: '127.0.0.1', port: 0, log: silentLogger });
    try {
      const res = await fetch(endpoint.url);
      expect(res.headers.get('content-type')).toContain('text/plain');
      expect(await res.text()).toContain('gradfleet_build_info{version=');
      expect((await fetch(endpoint.url.replace('/metrics', '/healthz'))).status).toBe(200);
      expect((await fetch(endpoint.url.replace('/metrics', '/other'))).status).toBe(404);
      expect((await fetch(endpoint.url, { method: 'POST' })).status).toBe(405);
      const port = Number(new URL(endpoint.url).port);
      await expect(serveMetrics(m.registry, { host: '127.0.0.1', port, log: silentLogger })).rejects.toThrow(
        /metrics port 127\.0\.0\.1:\d+ is already in use/,
      );
    } finally {
      await endpoint.close();
    }
    // Closed means closed: the port is free again.
    const probe = createServer();
    await new Promise<void>((resolve, reject) =>
      probe.once('error', reject).listen(Number(new URL(endpoint.url).port), '127.0.0.1', resolve),
    );
    probe.close();
  });
});
