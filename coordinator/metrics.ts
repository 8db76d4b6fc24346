/**
 * The coordinator's Prometheus metrics: progress, loss, phases, the cluster's workers and what they
 * cost, rejected frames, checkpoints. Everything here is fed by hooks and counters the training loop
 * already calls; nothing in the loop waits on metrics.
 */
import { adapterLabel } from '../training/backends/adapters.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LateGauge } from '../common/late-gauge.js';
import { packageVersion } from '../common/package-info.js';
import type { ChannelMeter } from '../protocol/channel.js';
import { REJECTION_REASONS, type RejectionReason } from '../protocol/errors.js';
import {
  type CoordinatorHooks,
  OUTLIER_VERDICTS,
  SPOT_CHECK_ITEMS,
  SPOT_CHECK_OUTCOMES,
  SPOT_CHECKERS,
  type StepReport,
} from './hooks.js';
import type { ShardReport } from './shard-set.js';
import { stragglerRatio } from './stragglers.js';
import type { WorkerSession } from './worker-pool.js';

const PHASES = ['gather', 'reduce', 'optimizer', 'broadcast'] as const;
/** What a shard reducer times of each step it serves (broadcast: publishing its slice of the new weights). */
const SHARD_PHASES = ['reduce', 'optimizer', 'broadcast'] as const;

/** Step times span ~5 ms (mnist-small on GPUs) to tens of seconds (mnist-cnn on one CPU). */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const nowSeconds = () => Date.now() / 1000;

export class CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly backends = new Set<string>();
  private readonly adapters = new Set<string>();
  private readonly r = this.registry;
  private readonly buildInfo = new Gauge({
    name: 'gradfleet_build_info',
    help: "Always 1; labels: gradfleet version, role, model, the workers' compute backends and GPU adapters",
    labelNames: ['version', 'role', 'model', 'backend', 'adapter'],
    registers: [this.r],
  });
  private readonly steps = new Counter({
    name: 'gradfleet_steps_total',
    help: 'Optimizer steps taken (by this coordinator process)',
    registers: [this.r],
  });
  private readonly samples = new Counter({
    name: 'gradfleet_samples_total',
    help: 'Training samples processed',
    registers: [this.r],
  });
  private readonly epoch = new Gauge({
    name: 'gradfleet_epoch',
    help: 'Epoch in progress, counted from 1',
    registers: [this.r],
  });
  private readonly epochProgress = new Gauge({
    name: 'gradfleet_epoch_progress_ratio',
    help: "Fraction of the current epoch's steps done",
    registers: [this.r],
  });
  private readonly trainLoss = new LateGauge(this.r, {
    name: 'gradfleet_train_loss',
    help: "Mean cross-entropy of the last step's global batch",
  });
  private readonly trainAccuracy = new LateGauge(this.r, {
    name: 'gradfleet_train_accuracy_ratio',
    help: "Accuracy on the last step's global batch",
  });
  private readonly testLoss = new LateGauge(this.r, {
    name: 'gradfleet_test_loss',
    help: 'Mean cross-entropy on the test set at the last evaluation',
  });
  private readonly testAccuracy = new LateGauge(this.r, {
    name: 'gradfleet_test_accuracy_ratio',
    help: 'Accuracy on the test set at the last evaluation',
  });
  private readonly learningRate = new LateGauge(this.r, {
    name: 'gradfleet_learning_rate',
    help: 'Adam learning rate of the last step (with --local-steps: of its inner steps)',
  });
  private readonly gradNorm = new LateGauge(this.r, {
    name: 'gradfleet_gradient_norm',
    help: 'L2 norm of the last averaged gradient (trainable parameters)',
  });
  private readonly localRounds = new Counter({
    name: 'gradfleet_local_rounds_total',
    help: 'Rounds of local steps taken (--local-steps): each one outer step',
    registers: [this.r],
  });
  private readonly innerSteps = new Counter({
    name: 'gradfleet_local_inner_steps_total',
    help: "Inner Adam steps the replicas of local steps took, all replicas' together",
    registers: [this.r],
  });
  private readonly deltaNorm = new LateGauge(this.r, {
    name: 'gradfleet_local_delta_norm',
    help: "L2 norm of the last round's mean replica delta (round start − end, trainable parameters)",
  });
  private readonly outerLearningRate = new LateGauge(this.r, {
    name: 'gradfleet_local_outer_learning_rate',
    help: 'Learning rate of the last outer (Nesterov) step of local steps',
  });
  private readonly samplesPerSecond = new LateGauge(this.r, {
    name: 'gradfleet_samples_per_second',
    help: 'Training throughput of the last step',
  });
  private readonly stepDuration = new Histogram({
    name: 'gradfleet_step_duration_seconds',
    help: 'Wall time of a step, from handing out work to the new weights sent',
    buckets: STEP_BUCKETS,
    registers: [this.r],
  });
  private readonly phase = new Histogram({
    name: 'gradfleet_step_phase_seconds',
    help: 'Wall time of each phase of a step: gather (waiting for gradients), reduce, optimizer, broadcast',
    labelNames: ['phase'],
    buckets: STEP_BUCKETS,
    registers: [this.r],
  });
  private readonly lastStep = new Gauge({
    name: 'gradfleet_last_step_timestamp_seconds',
    help: "Unix time of the last completed step (of the run's start before the first)",
    registers: [this.r],
  });
  private readonly connected = new Gauge({
    name: 'gradfleet_workers_connected',
    help: 'Workers ready to take work',
    registers: [this.r],
  });
  private readonly joined = new Counter({
    name: 'gradfleet_workers_joined_total',
    help: 'Workers that became ready',
    registers: [this.r],
  });
  private readonly lost = new Counter({
    name: 'gradfleet_workers_lost_total',
    help: 'Ready workers that left or were dropped',
    registers: [this.r],
  });
  private readonly workerStep = new Gauge({
    name: 'gradfleet_worker_step_seconds',
    help: "Per worker: seconds from the last step's start to its last gradient arriving",
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly workerSpeed = new Gauge({
    name: 'gradfleet_worker_microbatches_per_second',
    help: 'Per worker: measured speed, which its share of each step follows',
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly workerCompute = new Counter({
    name: 'gradfleet_worker_compute_seconds_total',
    help: 'Per worker: compute time it reported for its gradients',
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly workerMicroBatches = new Counter({
    name: 'gradfleet_worker_microbatches_total',
    help: 'Per worker: micro-batches of training steps it delivered (its share of the work)',
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly workerSent = new Counter({
    name: 'gradfleet_worker_sent_bytes_total',
    help: 'Per worker: bytes received from it',
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly workerReceived = new Counter({
    name: 'gradfleet_worker_received_bytes_total',
    help: 'Per worker: bytes sent to it (weights, work, data)',
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly straggler = new Gauge({
    name: 'gradfleet_straggler_ratio',
    help: 'Slowest over median worker step time in the last step (1: balanced)',
    registers: [this.r],
  });
  private readonly paused = new Gauge({
    name: 'gradfleet_paused',
    help: '1 while the run waits for --min-workers, else 0',
    registers: [this.r],
  });
  private readonly deadlineMisses = new Counter({
    name: 'gradfleet_deadline_misses_total',
    help: 'Shares reassigned because a worker missed the step deadline',
    registers: [this.r],
  });
  private readonly workerStraggler = new Gauge({
    name: 'gradfleet_worker_straggler',
    help: 'Per worker: 1 while it is a persistent straggler (under half the median speed)',
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly localRestarts = new Counter({
    name: 'gradfleet_local_worker_restarts_total',
    help: 'gradfleet train: local worker processes restarted after an unexpected exit, per slot',
    labelNames: ['worker'],
    registers: [this.r],
  });
  private readonly rejections = new Counter({
    name: 'gradfleet_rejected_messages_total',
    help: 'Frames rejected, by reason',
    labelNames: ['reason'],
    registers: [this.r],
  });
  private readonly clippedSteps = new Counter({
    name: 'gradfleet_gradient_clipped_steps_total',
    help: 'Steps whose averaged gradient --max-grad-norm scaled down',
    registers: [this.r],
  });
  private readonly gradientValues = new Counter({
    name: 'gradfleet_gradient_values_total',
    help: 'Gradient values workers handed to their links while backward still ran (sent="during_backward": buckets, --bucket-mb) or after it ended (sent="after_backward")',
    labelNames: ['sent'] as const,
    registers: [this.r],
  });
  private readonly outliers = new Counter({
    name: 'gradfleet_outlier_nodes_total',
    help: 'Tree nodes --outlier-factor flagged, by verdict: confirmed by a recomputation, rejected (the sender named in the log), or unverified (no other worker)',
    labelNames: ['verdict'],
    registers: [this.r],
  });
  private readonly verifiable = new Counter({
    name: 'gradfleet_verifiable_items_total',
    help: 'Tree nodes and test chunks taken from workers, by item; with --verify-fraction some are recomputed (gradfleet_spot_checks_total)',
    labelNames: ['item'],
    registers: [this.r],
  });
  private readonly spotChecks = new Counter({
    name: 'gradfleet_spot_checks_total',
    help: 'Spot checks (--verify-fraction) by item, outcome (match, or mismatch: the referee named the liar) and who recomputed it (another worker, or the coordinator when none was ready)',
    labelNames: ['item', 'outcome', 'by'],
    registers: [this.r],
  });
  private readonly liarsEvicted = new Counter({
    name: 'gradfleet_liars_evicted_total',
    help: 'Workers caught lying by a spot check and evicted for the run (each named in the log with the evidence)',
    registers: [this.r],
  });
  // Shard reducers (--shards): each reports its own phases and the bytes of its worker links, which
  // never pass through the coordinator, so its `worker_*_bytes_total` no longer show a step's traffic.
  private readonly shardsConnected = new Gauge({
    name: 'gradfleet_shards_connected',
    help: 'Shard reducers joined (0 when the coordinator reduces in-process)',
    registers: [this.r],
  });
  private readonly shardsLost = new Counter({
    name: 'gradfleet_shards_lost_total',
    help: 'Shard reducers that left or were dropped (each one rolls the run back to its newest checkpoint)',
    registers: [this.r],
  });
  private readonly replayedSteps = new Counter({
    name: 'gradfleet_replayed_steps_total',
    help: 'Steps undone by rollbacks after a lost shard reducer, to be trained again',
    registers: [this.r],
  });
  private readonly shardPhase = new Histogram({
    name: 'gradfleet_shard_phase_seconds',
    help: 'Per shard reducer: wall time of each phase of a step on its slice: reduce, optimizer, broadcast (publishing its slice of the weights)',
    labelNames: ['shard', 'phase'],
    buckets: STEP_BUCKETS,
    registers: [this.r],
  });
  private readonly shardStep = new Gauge({
    name: 'gradfleet_shard_step_seconds',
    help: 'Per shard reducer: its reduce + optimizer + broadcast time in the last step',
    labelNames: ['shard'],
    registers: [this.r],
  });
  private readonly shardReceived = new Counter({
    name: 'gradfleet_shard_received_bytes_total',
    help: 'Per shard reducer: bytes it received on its worker links (gradient slices)',
    labelNames: ['shard'],
    registers: [this.r],
  });
  private readonly shardSent = new Counter({
    name: 'gradfleet_shard_sent_bytes_total',
    help: 'Per shard reducer: bytes it sent on its worker links (weights slices)',
    labelNames: ['shard'],
    registers: [this.r],
  });
  private readonly checkpointDuration = new Histogram({
    name: 'gradfleet_checkpoint_duration_seconds',
    help: 'Time to write a checkpoint',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.r],
  });
  private readonly lastCheckpoint = new LateGauge(this.r, {
    name: 'gradfleet_last_checkpoint_timestamp_seconds',
    help: 'Unix time of the last checkpoint written',
  });

  constructor(private readonly model: string) {
    collectDefaultMetrics({ register: this.registry });
    for (const reason of REJECTION_REASONS) this.rejections.inc({ reason }, 0);
    for (const verdict of OUTLIER_VERDICTS) this.outliers.inc({ verdict }, 0);
    for (const item of SPOT_CHECK_ITEMS) {
      this.verifiable.inc({ item }, 0);
      for (const outcome of SPOT_CHECK_OUTCOMES)
        for (const by of SPOT_CHECKERS) this.spotChecks.inc({ item, outcome, by }, 0);
    }
    this.lastStep.set(nowSeconds());
    this.setBuildInfo();
  }

  rejected(reason: RejectionReason): void {
    this.rejections.inc({ reason });
  }

  /** A local worker slot of `gradfleet train` got a replacement process. */
  localWorkerRestarted(slot: string): void {
    this.localRestarts.inc({ worker: slot });
  }

  /** Counts one worker's traffic, in the worker's terms: what it sent and received. */
  meterFor(workerId: string): ChannelMeter {
    return {
      sent: (bytes) => this.workerReceived.inc({ worker: workerId }, bytes),
      received: (bytes) => this.workerSent.inc({ worker: workerId }, bytes),
    };
  }

  hooks(): CoordinatorHooks {
    return {
      step: (report) => this.stepDone(report),
      evaluated: (point) => {
        this.testLoss.set(point.loss);
        this.testAccuracy.set(point.accuracy);
      },
      checkpoint: ({ seconds }) => {
        this.checkpointDuration.observe(seconds);
        this.lastCheckpoint.set(nowSeconds());
      },
      workerReady: (session) => this.workerReady(session),
      workerLost: (session) => {
        this.connected.dec();
        this.lost.inc();
        // A departed worker's gauges would otherwise go on showing its last value.
        this.workerStep.remove({ worker: session.id });
        this.workerSpeed.remove({ worker: session.id });
        this.workerStraggler.remove({ worker: session.id });
      },
      paused: (paused) => this.paused.set(paused ? 1 : 0),
      deadlineMissed: () => this.deadlineMisses.inc(),
      straggler: (worker, isStraggler) => this.workerStraggler.set({ worker }, isStraggler ? 1 : 0),
      outlier: (verdict) => this.outliers.inc({ verdict }),
      verified: (item, total) => this.verifiable.inc({ item }, total),
      spotCheck: (item, outcome, by) => this.spotChecks.inc({ item, outcome, by }),
      liarEvicted: () => this.liarsEvicted.inc(),
      shardsConnected: (count) => this.shardsConnected.set(count),
      shardsReduced: (reports) => this.shardsReduced(reports),
      shardLost: (shard) => {
        this.shardsLost.inc();
        // As for a departed worker: its gauge goes, its counters and histograms keep their totals.
        this.shardStep.remove({ shard });
      },
      rolledBack: (steps) => this.replayedSteps.inc(steps),
    };
  }

  private workerReady(session: WorkerSession): void {
    this.connected.inc();
    this.joined.inc();
    const adapter = session.adapter && adapterLabel(session.adapter);
    if (!this.backends.has(session.backend) || (adapter && !this.adapters.has(adapter))) {
      this.backends.add(session.backend);
      if (adapter) this.adapters.add(adapter);
      this.setBuildInfo();
    }
  }

  private setBuildInfo(): void {
    this.buildInfo.reset();
    this.buildInfo.set(
      {
        version: packageVersion,
        role: 'coordinator',
        model: this.model,
        backend: [...this.backends].sort().join(',') || 'none',
        adapter: [...this.adapters].sort().join(',') || 'none',
      },
      1,
    );
  }

  private shardsReduced(reports: ShardReport[]): void {
    for (const { shard, seconds, bytesIn, bytesOut } of reports) {
      for (const phase of SHARD_PHASES) this.shardPhase.observe({ shard, phase }, seconds[phase]);
      this.shardStep.set({ shard }, seconds.reduce + seconds.optimizer + seconds.broadcast);
      this.shardReceived.inc({ shard }, bytesIn);
      this.shardSent.inc({ shard }, bytesOut);
    }
  }

  private stepDone(r: StepReport): void {
    this.steps.inc();
    this.samples.inc(r.samples);
    this.epoch.set(r.position.epoch + 1);
    this.epochProgress.set((r.position.stepInEpoch + 1) / r.stepsPerEpoch);
    this.trainLoss.set(r.loss);
    this.trainAccuracy.set(r.accuracy);
    if (r.local) {
      this.localRounds.inc();
      this.innerSteps.inc(r.local.innerSteps);
      this.learningRate.set(r.local.innerLearningRate);
      this.outerLearningRate.set(r.learningRate);
      this.deltaNorm.set(r.gradientNorm());
    } else {
      this.learningRate.set(r.learningRate);
      this.gradNorm.set(r.gradientNorm());
    }
    if (r.clippedFrom !== undefined) this.clippedSteps.inc();
    this.gradientValues.inc({ sent: 'during_backward' }, r.gradientValues.duringBackward);
    this.gradientValues.inc({ sent: 'after_backward' }, r.gradientValues.afterBackward);
    this.samplesPerSecond.set(r.samples / Math.max(1e-9, r.seconds.total));
    this.stepDuration.observe(r.seconds.total);
    for (const phase of PHASES) this.phase.observe({ phase }, r.seconds[phase]);
    for (const [worker, seconds] of r.workerSeconds) this.workerStep.set({ worker }, seconds);
    for (const [worker, seconds] of r.computeSeconds) this.workerCompute.inc({ worker }, seconds);
    for (const [worker, count] of r.workerMicroBatches) this.workerMicroBatches.inc({ worker }, count);
    for (const [worker, speed] of r.workerSpeeds) this.workerSpeed.set({ worker }, speed);
    this.straggler.set(stragglerRatio([...r.workerSeconds.values()]));
    this.lastStep.set(nowSeconds());
  }
}
