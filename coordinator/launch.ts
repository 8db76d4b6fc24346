/**
 * Starting a run: a fresh state or one resumed from a checkpoint, the listener, the worker pool and
 * the coordinator, wired together; and the summary a finished run reports.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { RejectionCounts } from '../protocol/channel.js';
import type { Listener } from '../protocol/transport.js';
import { type Dataset, fingerprint, loadDataset } from '../training/data/index.js';
import { initialWeights } from '../training/models/init.js';
import { type ModelSpec, layerStarts, paramLayout } from '../training/models/spec.js';
import { getModel } from '../training/models/zoo.js';
import { createAdamState } from '../training/optimizer/adam.js';
import { trainableRanges } from '../training/optimizer/apply-update.js';
import { geometryOf, stepsPerEpoch, validateGeometry } from '../training/parallel/step-plan.js';
import { serveMetrics } from '../common/metrics-server.js';
import { UsageError } from '../common/errors.js';
import {
  Coordinator,
  type CoordinatorOptions,
  type RunOutcome,
  type VerificationTotals,
  type WorkerBackend,
} from './coordinator.js';
import type { RefereeContext, RefereeFactory } from './referee.js';
import { SpotChecks, spotCheckKeyOf } from './spot-checks.js';
import { type CoordinatorHooks, combineHooks } from './hooks.js';
import { CoordinatorMetrics } from './metrics.js';
import {
  type LoadedRun,
  dataSpecOf,
  exportModel,
  loadRunState,
  runPaths,
  writeConfusion,
  writeCurves,
  writeSummary,
} from './run-outputs.js';
import { type RunConfig, type RunState, batchingOf, emptyAccumulator, localStepsOf } from './run-state.js';
import type { SharedSecret } from '../protocol/auth.js';
import { CheckpointKey } from './checkpoint-file.js';
import type { AdmissionLimits } from '../protocol/admission.js';
import type { LedgerTotals } from './sample-ledger.js';
import { InProcessReducer } from './gradient-reducer.js';
import { ShardedReducer } from './sharded-reducer.js';
import { WeightsBroadcast } from './weights-broadcast.js';
import { WorkerPool } from './worker-pool.js';

/** How the coordinator keeps its workers honest and alive (cli/cluster-options.ts has the flags). */
export interface ClusterPolicy {
  stepDeadlineMs: number;
  heartbeat: { intervalMs: number; timeoutMs: number };
  limits: AdmissionLimits;
  secret?: SharedSecret;
  /** Checkpoint every this many steps as well as at each epoch's end (0: epochs only). */
  checkpointEvery: number;
  /**
   * --outlier-factor: recheck nodes this far above the step's median norm (coordinator/outliers.ts);
   * undefined: off.
   */
  outlierFactor?: number;
  /**
   * --verify-fraction: the share of nodes and test chunks another worker recomputes (coordinator/spot-checks.ts);
   * undefined or 0: off.
   */
  verifyFraction?: number;
  /**
   * --bucket-mb: values per gradient bucket, which workers send as backward makes them final instead of each
   * node whole at its end; undefined or 0: whole nodes.
   */
  bucketValues?: number;
}

export type NewRunConfig = Omit<RunConfig, 'runId' | 'train' | 'test'> & { train: string; test: string };

/** A fresh run from its config, or a resumed one, of which only the length may change. */
export type RunStart =
  | { kind: 'fresh'; config: NewRunConfig }
  | {
      kind: 'resume';
      from: string;
      overrides: Partial<Pick<RunConfig, 'epochs' | 'maxSteps'>>;
      /** Refuse to continue a run of another model (--auto-resume, where the command line names one). */
      expectModel?: string;
      /**
       * The run's data named again (--train/--test), in place of the files its checkpoint names: it must be
       * the same data (the fingerprints are checked).
       */
      data?: { train?: string; test?: string };
    };

export interface LaunchOptions {
  start: RunStart;
  outDir: string;
  /** Redraw curves.svg every this many steps as well as after each epoch (0: epochs only). */
  curvesEvery?: number;
  /** Evaluate every this many steps as well as at each epoch's end (0 or absent: epochs only). */
  evalEvery?: number;
  listen: (maxFrameBytes: number) => Promise<Listener>;
  /** The transport's name, for the summary. */
  transport: string;
  minWorkers: number;
  /**
   * Workers to wait for before the first step, when more than minWorkers (train's own local
   * workers); after `startGraceMs` the run starts with those it has.
   */
  startWorkers?: { count: number; graceMs: number };
  policy: ClusterPolicy;
  /** Largest frame accepted from a worker; must hold the model's weights. */
  maxFrameBytes: number;
  log: Logger;
  hooks?: CoordinatorHooks;
  /** Serve Prometheus metrics at http://host:port/metrics while the run lasts. */
  metrics?: { host: string; port: number };
  /** Shard reducers to wait for, which then run reduce and Adam (shard/); absent: this process does. */
  shards?: number;
  /** Builds the referee of failed spot checks (needed when policy.verifyFraction > 0). */
  referee?: RefereeFactory;
}

export interface RunSummary {
  model: string;
  backend: string;
  workers: number;
  transport: string;
  wire: string;
  steps: number;
  epochs: number;
  samples: number;
  wall_s: number;
  samples_per_s: number;
  test_accuracy: number | null;
  test_loss: number | null;
  /** Every test evaluation of this invocation (epoch ends, and every --eval-every steps), in order. */
  evaluations: { step: number; samples: number; test_accuracy: number; test_loss: number }[];
  /** A run of local steps: H inner steps of `inner_batch` samples per replica, K replicas, the outer step. */
  local_steps?: {
    steps: number;
    replicas: number;
    inner_batch: number;
    outer: { learningRate: number; momentum: number };
  };
  weights_sha256: string;
  checkpoint: string | null;
  out: string;
  stopped: string;
  rejected_frames: Record<string, number>;
  phases_s_per_step: Record<string, number>;
  /**
   * Per worker: micro-batches of training steps it delivered (its share, as the coordinator's timing set it).
   */
  micro_batches_by_worker: Record<string, number>;
  /** Every sample of every epoch accounted: duplicates and missing must be 0. */
  accounting: {
    samples: number;
    micro_batches: number;
    duplicate_samples: number;
    missing_samples: number;
    epochs_complete: number;
  };
  /** `gradfleet train` only: its supervised local worker processes. */
  local_workers?: LocalWorkersReport;
  /** Each worker's backend, and the GPU adapter of a webgpu worker. */
  backends: Record<string, WorkerBackend>;
  /** Shard reducers that ran reduce and Adam (1: this coordinator, in process). */
  shards: number;
  /** Steps replayed after a shard reducer was lost (the run rolled back to its newest checkpoint). */
  replayed_steps: number;
  /** Spot checks (--verify-fraction): items taken and recomputed, mismatches, and the workers evicted. */
  verification?: {
    fraction: number;
    nodes: number;
    nodes_checked: number;
    chunks: number;
    chunks_checked: number;
    checked_share: number;
    mismatches: number;
    evicted: string[];
  };
}

export interface LocalWorkersReport {
  restarts: number;
  restarts_by_worker: Record<string, number>;
  /** Slots that kept crashing past their restarts: which, how it last exited, its last stderr lines. */
  gave_up: { worker: string; exit: string; stderr_tail: string[] }[];
}

export interface LaunchedRun {
  url: string;
  /** Where Prometheus scrapes the coordinator, when metrics were asked for. */
  metricsUrl: string | null;
  coordinator: Coordinator;
  /** The run's Prometheus metrics, when asked for. */
  metrics: CoordinatorMetrics | undefined;
  /**
   * Runs to the end, writes the run's outputs and returns its summary (with what `extras` adds to
   * it); `beforeShutdown` is called just before the workers are told to shut down.
   */
  finish(o?: {
    extras?: () => Pick<RunSummary, 'local_workers'>;
    beforeShutdown?: () => void;
  }): Promise<RunSummary>;
}

function weightsSha256(weights: Float32Array): string {
  return createHash('sha256')
    .update(new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength))
    .digest('hex');
}

function datasetRef(spec: string, data: Dataset) {
  return { spec, fingerprint: fingerprint(data), count: data.count };
}

function loadLabelled(spec: string, role: string): Dataset {
  const data = loadDataset(spec);
  if (!data.labels) throw new Error(`${spec}: ${role} data needs labels`);
  return data;
}

/**
 * Where a resumed run's `split` data is: as named again on the command line, else as its checkpoint names
 * it, when that may be followed (dataSpecOf). Without any secret nothing is authenticated, and an unsigned
 * checkpoint's files are followed as before: the run directory is the operator's own.
 */
function resumedDataSpec(
  run: LoadedRun,
  split: 'train' | 'test',
  named: string | undefined,
  log: Logger,
): string {
  if (named !== undefined) return named;
  const spec = run.state.config[split].spec;
  const verdict = dataSpecOf(run, spec);
  if (verdict.ok) return spec;
  const { signature } = run;
  if (signature.state === 'unsigned' && !signature.keyGiven) {
    log.info({ spec }, `${split} data: ${spec}, as the unsigned checkpoint names it (no secret given)`);
    return spec;
  }
  throw new Error(
    `cannot resume ${run.path}: ${verdict.why}. Name the run's ${split} data with --${split} FILE (its fingerprint is checked)${signature.state === 'unverified' ? ", or give the run's secret" : ''}`,
  );
}

/** A resumed run's state and data: the data named in its checkpoint (or again), proven unchanged. */
async function resumedRun(
  resume: Extract<RunStart, { kind: 'resume' }>,
  log: Logger,
  key: CheckpointKey | undefined,
) {
  const run = await loadRunState(resume.from, log, { key });
  const { state, path } = run;
  for (const split of ['train', 'test'] as const)
    state.config[split].spec = resumedDataSpec(run, split, resume.data?.[split], log);
  const { expectModel } = resume;
  if (expectModel !== undefined && expectModel !== state.config.model)
    throw new Error(`${path} is a ${state.config.model} run, not ${expectModel}: pick another --out`);
  for (const [key, value] of Object.entries(resume.overrides))
    if (value !== undefined) Object.assign(state.config, { [key]: value });
  const data = {
    train: loadLabelled(state.config.train.spec, 'training'),
    test: loadLabelled(state.config.test.spec, 'test'),
  };
  for (const split of ['train', 'test'] as const) {
    if (fingerprint(data[split]) !== state.config[split].fingerprint)
      throw new Error(
        `cannot resume ${path}: the ${split} data (${state.config[split].spec}) differs from the run's`,
      );
  }
  log.info(
    { path, step: state.step },
    `resuming ${state.config.model} run ${state.config.runId} from step ${state.step} (${path})`,
  );
  return { state, ...data };
}

function freshRun(fresh: NewRunConfig) {
  const { train: trainSpec, test: testSpec, ...rest } = fresh;
  const train = loadLabelled(trainSpec, 'training');
  const test = loadLabelled(testSpec, 'test');
  const model = getModel(rest.model);
  const config: RunConfig = {
    ...rest,
    runId: randomUUID(),
    train: datasetRef(trainSpec, train),
    test: datasetRef(testSpec, test),
  };
  const weights = initialWeights(model, config.seed);
  const state: RunState = {
    config,
    step: 0,
    weights,
    adam: createAdamState(weights.length),
    epochAccumulator: emptyAccumulator(),
    history: [],
    stepLosses: [],
  };
  return { state, train, test };
}

function verificationSummary(v: VerificationTotals): NonNullable<RunSummary['verification']> {
  const items = v.nodes + v.chunks;
  return {
    fraction: v.fraction,
    nodes: v.nodes,
    nodes_checked: v.nodesChecked,
    chunks: v.chunks,
    chunks_checked: v.chunksChecked,
    checked_share: items === 0 ? 0 : (v.nodesChecked + v.chunksChecked) / items,
    mismatches: v.mismatches,
    evicted: v.evicted,
  };
}

/** --verify-fraction's spot checks and their referee, or undefined when off. */
async function verificationOf(
  launch: LaunchOptions,
  context: RefereeContext,
): Promise<CoordinatorOptions['verification']> {
  const fraction = launch.policy.verifyFraction ?? 0;
  if (fraction === 0) return undefined;
  if (launch.shards !== undefined)
    throw new UsageError(
      '--verify-fraction does not work with --shards yet: the referee needs the whole gradient',
    );
  if (!launch.referee) throw new Error('--verify-fraction needs a referee, and none was given');
  return {
    checks: new SpotChecks(fraction, spotCheckKeyOf(process.env)),
    referee: await launch.referee(context),
  };
}

export async function launchRun(launch: LaunchOptions): Promise<LaunchedRun> {
  const checkpointKey = launch.policy.secret && CheckpointKey.fromSecret(launch.policy.secret);
  const { state, train, test } =
    launch.start.kind === 'resume'
      ? await resumedRun(launch.start, launch.log, checkpointKey)
      : freshRun(launch.start.config);
  const model = getModel(state.config.model);
  validateGeometry(geometryOf(batchingOf(state.config), train.count));
  const verification = await verificationOf(launch, {
    model,
    seed: state.config.seed,
    geometry: geometryOf(batchingOf(state.config), train.count),
    train,
    test,
    localSteps: localStepsOf(state.config),
  });
  const layout = paramLayout(model);
  const needed = layout.size * 4 + 4096;
  if (launch.maxFrameBytes < needed)
    throw new Error(
      `the frame limit (${launch.maxFrameBytes} bytes) is below one ${model.name} gradient (${needed} bytes with its header)`,
    );
  const metrics = launch.metrics ? new CoordinatorMetrics(model.name) : undefined;
  const endpoint =
    launch.metrics && metrics
      ? await serveMetrics(metrics.registry, { ...launch.metrics, log: launch.log })
      : undefined;
  const listener = await launch.listen(launch.maxFrameBytes).catch(async (err: unknown) => {
    await endpoint?.close();
    throw err;
  });
  const rejections = new RejectionCounts(metrics && ((reason) => metrics.rejected(reason)));
  const { config } = state;
  const pool = new WorkerPool({
    listener,
    log: launch.log,
    rejections,
    datasets: { train, test },
    maxFrameBytes: launch.maxFrameBytes,
    meterFor: metrics && ((id) => metrics.meterFor(id)),
    secret: launch.policy.secret,
    limits: launch.policy.limits,
    heartbeat: launch.policy.heartbeat,
    // Asked at a node's first bucket, by then the reducer below exists.
    nodeValues: () => reducer.nodePayloadSize,
    welcome: {
      type: 'welcome',
      runId: config.runId,
      model: model.name,
      seed: config.seed,
      ...batchingOf(config),
      localSteps: localStepsOf(config),
      layout: layout.entries.map((e) => ({ name: e.name, shape: [...e.shape], offset: e.offset })),
      layoutSize: layout.size,
      wire: config.wire,
      ...(launch.policy.bucketValues && { bucketValues: launch.policy.bucketValues }),
      train: { ...config.train, height: train.height, width: train.width },
      test: { ...config.test, height: test.height, width: test.width },
    },
  });
  const hooks = combineHooks(launch.hooks, metrics?.hooks());
  const reducer =
    launch.shards === undefined
      ? new InProcessReducer(
          state,
          layout,
          trainableRanges(layout),
          new WeightsBroadcast(
            state,
            config.wire,
            launch.policy.bucketValues
              ? { values: launch.policy.bucketValues, layerStarts: layerStarts(layout) }
              : undefined,
          ),
        )
      : new ShardedReducer({
          state,
          count: launch.shards,
          pool,
          log: launch.log,
          hooks,
          nodeSquares: launch.policy.outlierFactor !== undefined,
        });
  const coordinator = new Coordinator({
    state,
    model,
    train,
    test,
    pool,
    outDir: launch.outDir,
    minWorkers: launch.minWorkers,
    startWorkers: launch.startWorkers,
    stepDeadlineMs: launch.policy.stepDeadlineMs,
    checkpointEvery: launch.policy.checkpointEvery,
    outlierFactor: launch.policy.outlierFactor,
    verification,
    checkpointKey,
    curvesEvery: launch.curvesEvery ?? 0,
    evalEvery: launch.evalEvery ?? 0,
    log: launch.log,
    rejections,
    hooks,
    reducer,
  });
  launch.log.info(
    {
      url: listener.url,
      out: launch.outDir,
      steps_per_epoch: stepsPerEpoch(geometryOf(batchingOf(config), train.count)),
    },
    `coordinator listening on ${listener.url}`,
  );
  return {
    url: listener.url,
    metricsUrl: endpoint?.url ?? null,
    coordinator,
    metrics,
    finish: async ({ extras, beforeShutdown } = {}) => {
      try {
        const outcome = await coordinator.run();
        const summary = {
          ...summarize(outcome, model, launch.outDir, rejections, launch.transport),
          ...extras?.(),
        };
        await writeOutputs(outcome, model, launch.outDir, launch.log);
        await writeSummary(launch.outDir, summary);
        beforeShutdown?.();
        pool.shutdown(outcome.stopped === 'finished' ? 'training finished' : 'training interrupted');
        return summary;
      } finally {
        await listener.close();
        await endpoint?.close();
      }
    },
  };
}

async function writeOutputs(
  outcome: RunOutcome,
  model: ModelSpec,
  outDir: string,
  log: Logger,
): Promise<void> {
  await writeCurves(outDir, outcome.state);
  if (outcome.evaluation)
    await writeConfusion(
      runPaths(outDir).confusion,
      outcome.evaluation,
      `${model.name} at step ${outcome.state.step}: test set`,
    );
  await exportModel(outDir, model, outcome.state.weights, log);
}

function summarize(
  outcome: RunOutcome,
  model: ModelSpec,
  outDir: string,
  rejections: RejectionCounts,
  transport: string,
): RunSummary {
  const { state, phases } = outcome;
  const a: LedgerTotals = outcome.accounting;
  const perStep = (s: number) => (phases.steps > 0 ? s / phases.steps : 0);
  return {
    model: model.name,
    backend: [...new Set([...outcome.workerBackends.values()].map((b) => b.backend))].join(',') || 'none',
    backends: Object.fromEntries([...outcome.workerBackends].sort(([a], [b]) => a.localeCompare(b))),
    workers: outcome.workerBackends.size,
    micro_batches_by_worker: Object.fromEntries(outcome.microBatchesBy),
    transport,
    wire: state.config.wire,
    steps: state.step,
    epochs: state.history.length,
    samples: outcome.samplesRun,
    wall_s: outcome.trainSeconds,
    samples_per_s: outcome.samplesRun / Math.max(1e-9, outcome.trainSeconds),
    test_accuracy: outcome.evaluation?.accuracy ?? null,
    test_loss: outcome.evaluation?.loss ?? null,
    evaluations: outcome.evaluations.map((e) => ({
      step: e.step,
      samples: e.samples,
      test_accuracy: e.accuracy,
      test_loss: e.loss,
    })),
    ...(state.config.localSteps && {
      local_steps: {
        steps: state.config.localSteps.steps,
        replicas: state.config.localSteps.replicas,
        inner_batch: state.config.batchSize,
        outer: state.config.localSteps.outer,
      },
    }),
    weights_sha256: weightsSha256(state.weights),
    checkpoint: outcome.checkpoint,
    out: outDir,
    stopped: outcome.stopped,
    rejected_frames: { ...rejections.byReason },
    phases_s_per_step: {
      gather: perStep(phases.gather),
      compute: perStep(phases.compute),
      reduce: perStep(phases.reduce),
      optimizer: perStep(phases.optimizer),
      broadcast: perStep(phases.broadcast),
    },
    shards: outcome.reducers,
    replayed_steps: outcome.replayedSteps,
    ...(outcome.verification && { verification: verificationSummary(outcome.verification) }),
    accounting: {
      samples: a.samples,
      micro_batches: a.microBatches,
      duplicate_samples: a.duplicates,
      missing_samples: a.missing,
      epochs_complete: a.epochsComplete,
    },
  };
}
