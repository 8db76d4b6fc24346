/**
 * The coordinator's training loop: for each step, shards the micro-batches over the ready workers,
 * gathers their tree nodes, reduces them over the fixed tree, applies Adam and broadcasts the new
 * weights. Each epoch it evaluates on the test set (sharded too) and checkpoints.
 *
 * Work is handed out as ranges; a worker that leaves, misses the step deadline or sends a rejected
 * result gives its ranges back and they go to whoever is ready, so the step still completes with
 * the same bits. Below --min-workers the run pauses between steps until enough have joined.
 */
import type { Logger } from 'pino';
import type { GpuAdapterInfo } from '../training/backends/adapters.js';
import type { MessageOf } from '../protocol/messages.js';
import type { RejectionCounts } from '../protocol/channel.js';
import type { Dataset } from '../training/data/index.js';
import type { ModelSpec } from '../training/models/spec.js';
import { type TreeNode, nodeKey, nodeRange } from '../training/parallel/reduction-tree.js';
import {
  type BatchGeometry,
  type StepBatch,
  type StepPosition,
  geometryOf,
  positionOf,
  samplesBefore,
  stepBatch,
  stepsPerEpoch,
} from '../training/parallel/step-plan.js';
import type { Evaluation } from '../training/step/evaluate.js';
import type { CheckpointKey } from './checkpoint-file.js';
import { removeCheckpointsAfter } from './checkpoint-rewind.js';
import { saveCheckpoint } from './checkpoint-store.js';
import { EvalGather } from './eval-gather.js';
import { type GradientReducer, ReducerStateLost } from './gradient-reducer.js';
import type { CoordinatorHooks, EvaluationPoint, PhaseTotals, StepReport } from './hooks.js';
import { innerAdam, innerStepsOfRound } from '../training/step/local-steps.js';
import { loadRunState, runPaths, writeCurves } from './run-outputs.js';
import {
  type EpochSummary,
  type RunState,
  batchingOf,
  emptyAccumulator,
  localStepsOf,
  stateToCheckpoint,
} from './run-state.js';
import { type LedgerTotals, SampleLedger } from './sample-ledger.js';
import { NormHistory, type NodeNorm, flagOutliers } from './outliers.js';
import type { Referee } from './referee.js';
import {
  type ChunkResult,
  type Comparison,
  type SpotChecks,
  compareChunks,
  compareNodes,
} from './spot-checks.js';
import { type Anchor, TrustAnchors, anchorOf } from './trust-anchors.js';
import { splitRange, updateSpeed } from './sharding.js';
import { addPhases, stepReport } from './step-report.js';
import { StragglerReport, median } from './stragglers.js';
import { StepGather, type Verdict } from './step-gather.js';
import type { ResultMessage, WorkerPool, WorkerSession } from './worker-pool.js';
import type { ItemRange } from './work-tracker.js';
import { type WorkSpec, WorkUnit } from './work-unit.js';

/** The id of the fastest of `speeds` (the first of equals). */
function fastest(speeds: readonly { id: string; speed: number }[]): string {
  return speeds.reduce((a, b) => (b.speed > a.speed ? b : a)).id;
}

/** A ready worker left without work this many steps in a row gets one micro-batch, to measure it again. */
const PROBE_AFTER_IDLE_STEPS = 3;

export interface CoordinatorOptions {
  state: RunState;
  model: ModelSpec;
  train: Dataset;
  test: Dataset;
  pool: WorkerPool;
  outDir: string;
  minWorkers: number;
  /**
   * Workers to wait for before the first step, if more than minWorkers; after graceMs it starts with
   * minWorkers.
   */
  startWorkers?: { count: number; graceMs: number };
  /** A worker that has not delivered its share this long after it was assigned loses it for the step. */
  stepDeadlineMs: number;
  /** Checkpoint every this many steps as well as at each epoch's end (0: epochs only). */
  checkpointEvery: number;
  /** Redraw curves.svg every this many steps as well as at each epoch's end (0: epochs only). */
  curvesEvery: number;
  /**
   * Evaluate on the test set every this many steps as well as at each epoch's end (0: epochs only): how many
   * steps and samples a run needs to reach an accuracy (bench tta).
   */
  evalEvery?: number;
  /** Recheck tree nodes whose mean-gradient norm exceeds this × the step's median (undefined: off). */
  outlierFactor?: number;
  /**
   * --verify-fraction: which nodes and test chunks another worker recomputes, and who decides a mismatch
   * (undefined: off).
   */
  verification?: Verification;
  /** Every checkpoint the run saves is signed, and every one it loads back verified, with it (the secret's). */
  checkpointKey?: CheckpointKey;
  /** Turns each step's gathered nodes into the next weights and gets them to the workers. */
  reducer: GradientReducer;
  log: Logger;
  rejections: RejectionCounts;
  hooks?: CoordinatorHooks;
}

export interface RunOutcome {
  state: RunState;
  /** Steps and samples trained by this invocation (a resumed run counts from where it resumed). */
  stepsRun: number;
  samplesRun: number;
  trainSeconds: number;
  evaluation: Evaluation | null;
  /** Every test evaluation of this invocation, in order (epoch ends, and every --eval-every steps). */
  evaluations: EvaluationPoint[];
  checkpoint: string | null;
  stopped: 'finished' | 'interrupted';
  phases: PhaseTotals;
  /** Per worker: micro-batches of training steps it delivered in this invocation (its share of the work). */
  microBatchesBy: Map<string, number>;
  /** Each worker seen (ready at least once), by id: its backend and GPU adapter. */
  workerBackends: Map<string, WorkerBackend>;
  accounting: LedgerTotals;
  /** Steps run again after the reducer lost state and the run rolled back to its newest checkpoint. */
  replayedSteps: number;
  /** Processes that reduced (1: the coordinator, in process; S: shard reducers). */
  reducers: number;
  /** Spot checks (--verify-fraction), when on. */
  verification?: VerificationTotals;
}

/** --verify-fraction: which items are recomputed, and who decides a mismatch. */
export interface Verification {
  checks: SpotChecks;
  referee: Referee;
}

export interface VerificationTotals {
  fraction: number;
  nodes: number;
  nodesChecked: number;
  chunks: number;
  chunksChecked: number;
  mismatches: number;
  /** Workers caught lying, evicted and banned for the run. */
  evicted: string[];
}

/** A recomputation found no worker to do it: the item stays as it was, unchecked. */
class NoPeer extends Error {
  override name = 'NoPeer';
}

/** A spot check caught `liars`: the run goes back to `anchor` (their first unchecked node) and replays. */
class LiarCaught extends Error {
  override name = 'LiarCaught';
  constructor(
    readonly liars: string[],
    readonly anchor: Anchor,
  ) {
    super(`caught lying: ${liars.join(', ')}`);
  }
}

/** What a worker computes on, as its hello said. */
export interface WorkerBackend {
  backend: string;
  adapter?: GpuAdapterInfo;
}

export class Coordinator {
  private active: WorkUnit | undefined;
  private readonly reducer: GradientReducer;
  private pending: ItemRange[] = [];
  private stopRequested = false;
  private evalRound = 0;
  private readonly geometry: BatchGeometry;
  private readonly phases: PhaseTotals = {
    steps: 0,
    gather: 0,
    compute: 0,
    reduce: 0,
    optimizer: 0,
    broadcast: 0,
  };
  private readonly microBatchesBy = new Map<string, number>();
  private readonly workerBackends = new Map<string, WorkerBackend>();
  private lastCheckpoint: { step: number; path: string } | undefined;
  private readonly ledger: SampleLedger;
  private readonly stragglers: StragglerReport;
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** The sample ledger as of the newest checkpoint: a rollback goes back to it. */
  private ledgerAtCheckpoint: SampleLedger | undefined;
  private replayedSteps = 0;
  private readonly evaluations: EvaluationPoint[] = [];
  private readonly anchors = new TrustAnchors();
  private readonly normHistory = new NormHistory();
  private readonly verificationTotals: VerificationTotals | undefined;

  constructor(private readonly settings: CoordinatorOptions) {
    const { state, train, pool, log, hooks, reducer } = settings;
    this.geometry = geometryOf(batchingOf(state.config), train.count);
    this.ledger = new SampleLedger(train.count);
    this.reducer = reducer;
    this.stragglers = new StragglerReport('worker', 'micro-batches/s', log, hooks?.straggler);
    const checks = settings.verification?.checks;
    if (checks)
      this.verificationTotals = {
        fraction: checks.fraction,
        nodes: 0,
        nodesChecked: 0,
        chunks: 0,
        chunksChecked: 0,
        mismatches: 0,
        evicted: [],
      };
    reducer.attach({
      concluded: (gather, session, message, verdict) => {
        const work = this.active;
        if (work?.kind !== 'contribution' || work.tracker !== gather.tracker) return;
        this.conclude(work, session, message, work.spec.concluded?.(verdict) ?? verdict);
      },
      failed: (err) => this.abortWork(err),
    });
    pool.setEvents({
      ready: (s) => this.onReady(s),
      lost: (s, reason) => this.onLost(s, reason),
      result: (s, m, p) => this.onResult(s, m, p),
      holding: (s) => this.onHolding(s),
    });
  }

  /** Resolves once the reducer serves (every shard reducer holds its slice) and workers may join. */
  serving(): Promise<void> {
    return this.reducer.serving();
  }

  /** Finish the step in flight, checkpoint, and stop (Ctrl-C). */
  requestStop(): void {
    this.stopRequested = true;
    this.wakeFromPause();
  }

  private wakeFromPause: () => void = () => {};

  async run(): Promise<RunOutcome> {
    const { state, log } = this.settings;
    const { config } = state;
    const finished = () =>
      positionOf(this.geometry, state.step).epoch >= config.epochs ||
      (config.maxSteps !== null && state.step >= config.maxSteps);
    if (finished()) {
      log.info({ step: state.step }, `the run is already finished (step ${state.step}): nothing to do`);
      return this.outcome({
        stepsRun: 0,
        samplesRun: 0,
        trainSeconds: 0,
        evaluation: null,
        stopped: 'finished',
      });
    }
    await Promise.race([this.reducer.serving(), this.stopWaiting()]);
    if (this.stopRequested)
      return this.outcome({
        stepsRun: 0,
        samplesRun: 0,
        trainSeconds: 0,
        evaluation: null,
        stopped: 'interrupted',
      });
    await this.waitToStart();
    const started = performance.now();
    const startStep = state.step;
    let samplesRun = 0;
    let evaluation: Evaluation | null = null;
    let evaluatedAt = -1;
    const perEpoch = stepsPerEpoch(this.geometry);
    const first = positionOf(this.geometry, state.step);
    this.ledger.begin(first.epoch, stepBatch(this.geometry, first.stepInEpoch).batchStart);
    // A reducer that can lose state (a shard's slice of the Adam moments) needs a checkpoint to roll back to
    // from the start.
    if (this.reducer.losesState && this.lastCheckpoint?.step !== state.step) await this.checkpoint();
    let stopped: RunOutcome['stopped'];
    // The final evaluation and checkpoint need the reducer's state too: lost there, the run rolls back, and
    // training resumes.
    for (;;) {
      while (!this.stopRequested && !finished()) {
        await this.waitWhilePaused();
        if (this.stopRequested) break;
        const position = positionOf(this.geometry, state.step);
        try {
          await this.anchorIfNeeded();
          samplesRun += await this.runStep(position);
          const evalEvery = this.settings.evalEvery ?? 0;
          if (position.stepInEpoch === perEpoch - 1) {
            this.closeLedger(position.epoch);
            evaluation = await this.evaluate();
            evaluatedAt = state.step;
            this.closeEpoch(position.epoch, evaluation, (performance.now() - started) / 1000);
            await this.checkpoint();
            await writeCurves(this.settings.outDir, state);
          } else {
            if (evalEvery > 0 && state.step % evalEvery === 0) {
              evaluation = await this.evaluate();
              evaluatedAt = state.step;
            }
            if (this.settings.checkpointEvery > 0 && state.step % this.settings.checkpointEvery === 0)
              await this.checkpoint();
            if (this.settings.curvesEvery > 0 && state.step % this.settings.curvesEvery === 0)
              await writeCurves(this.settings.outDir, state);
          }
        } catch (err) {
          if (err instanceof LiarCaught) samplesRun -= await this.rewind(err);
          else if (err instanceof ReducerStateLost) samplesRun -= await this.rollBack(err);
          else throw err;
        }
      }
      stopped = this.stopRequested && !finished() ? 'interrupted' : 'finished';
      try {
        if (stopped === 'finished' && evaluatedAt !== state.step) {
          evaluation = await this.evaluate();
          evaluatedAt = state.step;
        }
        if (this.lastCheckpoint?.step !== state.step) await this.checkpoint();
        break;
      } catch (err) {
        if (err instanceof LiarCaught) {
          samplesRun -= await this.rewind(err);
          continue;
        }
        if (!(err instanceof ReducerStateLost)) throw err;
        samplesRun -= await this.rollBack(err);
        // Stopped while waiting for a replacement: the newest checkpoint, just restored, is where the run
        // stands.
        if (this.stopRequested) {
          stopped = 'interrupted';
          break;
        }
      }
    }
    return this.outcome({
      stepsRun: state.step - startStep,
      samplesRun,
      trainSeconds: (performance.now() - started) / 1000,
      evaluation,
      stopped,
    });
  }

  private outcome(
    o: Pick<RunOutcome, 'stepsRun' | 'samplesRun' | 'trainSeconds' | 'evaluation' | 'stopped'>,
  ): RunOutcome {
    return {
      ...o,
      state: this.settings.state,
      checkpoint: this.lastCheckpoint?.path ?? null,
      phases: { ...this.phases },
      microBatchesBy: this.microBatchesBy,
      workerBackends: this.workerBackends,
      accounting: { ...this.ledger.totals },
      replayedSteps: this.replayedSteps,
      reducers: this.reducer.reducers,
      evaluations: [...this.evaluations],
      ...(this.verificationTotals && {
        verification: { ...this.verificationTotals, evicted: [...this.verificationTotals.evicted] },
      }),
    };
  }

  /**
   * The reducer lost state (a shard reducer left with its slice of Adam's): the run goes back to its newest
   * checkpoint (weights, moments, step, ledger) and replays from there. Every shuffle and dropout
   * mask derives from (seed, epoch, step), so the replay computes the bits the lost steps had.
   * Returns the samples of the steps undone.
   */
  private async rollBack(err: ReducerStateLost): Promise<number> {
    const { state, log, outDir } = this.settings;
    const { state: saved, path } = await loadRunState(outDir, log, { key: this.settings.checkpointKey });
    const undone = state.step - saved.step;
    log.error(
      { reason: err.message, from_step: state.step, to_step: saved.step, checkpoint: path },
      `${err.message}: rolling back to step ${saved.step} (${path}) and replaying ${undone} step(s) once the reducer serves again`,
    );
    const { config } = state;
    Object.assign(state, saved, { config });
    this.pending = [];
    if (this.ledgerAtCheckpoint) this.ledger.restore(this.ledgerAtCheckpoint);
    this.replayedSteps += undone;
    this.settings.hooks?.rolledBack?.(undone);
    await Promise.race([this.reducer.recover(), this.stopWaiting()]);
    if (!this.stopRequested)
      log.info({ step: state.step }, `the reducer serves again: replaying from step ${state.step}`);
    return samplesBefore(this.geometry, saved.step + undone) - samplesBefore(this.geometry, saved.step);
  }

  /** The reducer cannot finish the work in flight: its runWork rejects with `err`. */
  private abortWork(err: ReducerStateLost): void {
    const work = this.active;
    if (!work) return;
    this.active = undefined;
    work.abort(err);
  }

  /**
   * Before the first step: the workers asked for (all of train's local ones), or --min-workers once their
   * grace is over.
   */
  private async waitToStart(): Promise<void> {
    const { pool, minWorkers, log } = this.settings;
    const start = this.settings.startWorkers;
    const wanted = Math.max(minWorkers, start?.count ?? 0);
    if (pool.ready().length >= wanted) return;
    log.info({ workers: wanted, min_workers: minWorkers }, `waiting for ${wanted} worker(s)`);
    let graceTimer: NodeJS.Timeout | undefined;
    const graceOver =
      start && wanted > minWorkers
        ? new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, start.graceMs))).then(() => {
            log.warn(
              { ready: pool.ready().length, wanted },
              `${pool.ready().length} of ${wanted} workers ready after ${start.graceMs / 1000} s: starting with at least ${minWorkers}`,
            );
            return pool.waitForReady(minWorkers);
          })
        : new Promise<void>(() => {});
    await Promise.race([pool.waitForReady(wanted), graceOver, this.stopWaiting()]).finally(() =>
      clearTimeout(graceTimer),
    );
  }

  /** Between steps: paused, and saying so, while fewer than --min-workers are ready. */
  private async waitWhilePaused(): Promise<void> {
    const { pool, minWorkers, log, hooks } = this.settings;
    if (pool.ready().length >= minWorkers) return;
    log.warn(
      { ready: pool.ready().length, min_workers: minWorkers, step: this.settings.state.step },
      `paused at step ${this.settings.state.step}: ${pool.ready().length} of ${minWorkers} workers ready; waiting for more to join`,
    );
    hooks?.paused?.(true);
    await Promise.race([pool.waitForReady(minWorkers), this.stopWaiting()]);
    if (this.stopRequested) return;
    log.info(
      { ready: pool.ready().length, step: this.settings.state.step },
      `resumed with ${pool.ready().length} workers`,
    );
    hooks?.paused?.(false);
  }

  /** Resolves on Ctrl-C: a run waiting for workers stops rather than waiting on. */
  private stopWaiting(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wakeFromPause = resolve;
      if (this.stopRequested) resolve();
    });
  }

  private closeLedger(epoch: number): void {
    const missing = this.ledger.close();
    if (missing > 0)
      this.settings.log.error(
        { epoch: epoch + 1, missing },
        `epoch ${epoch + 1} closed with ${missing} samples never trained on`,
      );
  }

  /** Sends a worker micro-batches [first, end) of the step. */
  private assignFor(position: StepPosition, batch: StepBatch): WorkSpec['send'] {
    return (s, r) => s.channel.send(this.assignment(position, batch, r));
  }

  private assignment(position: StepPosition, batch: StepBatch, r: ItemRange): MessageOf<'assign'> {
    return {
      type: 'assign',
      step: position.step,
      epoch: position.epoch,
      batchStart: batch.batchStart,
      batchSamples: batch.samples,
      weightsVersion: this.settings.state.step,
      first: r.first,
      count: r.end - r.first,
    };
  }

  /** A round of local steps: the inner steps its replicas took, at which Adam rate. */
  private localStepsReport(position: StepPosition, batch: StepBatch): StepReport['local'] {
    const local = localStepsOf(this.settings.state.config);
    return (
      local && {
        innerSteps: innerStepsOfRound(batch.samples, local),
        innerLearningRate: innerAdam(local, position.epoch).learningRate,
      }
    );
  }

  /** Plan, dispatch and gather the step's nodes, recheck outliers, hand the nodes to the reducer, report. */
  private async runStep(position: StepPosition): Promise<number> {
    const { state, pool } = this.settings;
    const batch = stepBatch(this.geometry, position.stepInEpoch);
    const gather = new StepGather(position, batch, this.geometry, this.reducer.nodePayloadSize);
    this.reducer.begin(gather);
    const startedAt = performance.now();
    // What a step started again (a liar caught with no honest worker left) goes back to: its nodes are
    // entered in the ledger as they arrive.
    const ledgerBefore = this.settings.verification && this.ledger.copy();
    await this.runWork({
      kind: 'contribution',
      tracker: gather.tracker,
      accept: (s, m, p) => (m.type === 'contribution' ? this.acceptContribution(gather, s, m, p) : undefined),
      concluded: (verdict) => this.recorded(gather, verdict),
      send: this.assignFor(position, batch),
    });
    if (this.settings.outlierFactor !== undefined)
      await this.recheckOutliers(gather, this.settings.outlierFactor);
    if (this.settings.verification && ledgerBefore)
      await this.spotCheckNodes(gather, this.settings.verification, ledgerBefore);
    const gatheredAt = performance.now();
    this.settings.hooks?.gathered?.(position);
    const update = await this.reducer.apply(gather, position, pool.ready());
    const acc = state.epochAccumulator;
    acc.lossSum += update.lossSum;
    acc.correct += update.correct;
    acc.samples += update.samples;
    state.stepLosses.push(update.loss);
    const workerSpeeds = new Map(
      pool.ready().flatMap((w) => (w.speed === undefined ? [] : [[w.id, w.speed] as const])),
    );
    for (const [id, count] of gather.microBatchesBy)
      this.microBatchesBy.set(id, (this.microBatchesBy.get(id) ?? 0) + count);
    for (const w of pool.ready()) w.idleSteps = gather.computeSeconds.has(w.id) ? 0 : w.idleSteps + 1;
    this.stragglers.observe(workerSpeeds);
    const report = stepReport({
      position,
      stepsPerEpoch: stepsPerEpoch(this.geometry),
      epochSamples: this.geometry.trainCount,
      gather,
      update,
      startedAt,
      gatheredAt,
      workerSpeeds,
      nodeValues: state.weights.length,
      local: this.localStepsReport(position, batch),
    });
    addPhases(this.phases, report);
    this.settings.hooks?.step?.(report);
    return batch.samples;
  }

  /** A node checked by the step's gather and the reducer; an accepted one is entered in the sample ledger. */
  private acceptContribution(
    gather: StepGather,
    session: WorkerSession,
    message: MessageOf<'contribution'>,
    payload: Float32Array,
  ): Verdict {
    // Its buckets' arrivals: the worker pool closed them into this node just now, in this same call.
    if (message.bucketsSent) gather.noteBuckets(session.id, message, session.buckets.lastArrivals);
    return this.recorded(gather, this.reducer.admit(gather, session, message, payload));
  }

  private recorded(gather: StepGather, verdict: Verdict): Verdict {
    if (verdict.ok === true && verdict.trained) {
      this.ledger.record(gather.position.epoch, verdict.trained.start, verdict.trained.end);
      this.ledger.countMicroBatches(verdict.trained.microBatches);
    }
    return verdict;
  }

  /**
   * Each node far above the step's median (coordinator/outliers.ts) is computed again by another
   * worker. Confirmed, the original stands (so the weights' bits are those of an unchecked run);
   * refuted, the original is rejected as an outlier, its sender named, and the recomputation used.
   */
  private async recheckOutliers(gather: StepGather, factor: number): Promise<void> {
    const norms = this.reducer.nodeNorms(gather);
    const { flagged, median } = flagOutliers(norms, factor, this.normHistory.values);
    const rejected = new Set<string>();
    try {
      await this.recheckEach(gather, flagged, median, rejected);
    } finally {
      this.normHistory.add(norms.filter((n) => !rejected.has(n.key)).map((n) => n.meanNorm));
    }
  }

  private async recheckEach(
    gather: StepGather,
    flagged: readonly NodeNorm[],
    median: number,
    rejected: Set<string>,
  ): Promise<void> {
    const { log, pool } = this.settings;
    const { position, batch } = gather;
    for (const suspect of flagged) {
      const range = nodeRange(suspect.node, batch.microBatches);
      const about = `node [${range.first}, ${range.end}) of step ${position.step} from ${suspect.workerId} (mean-gradient norm ${suspect.meanNorm.toPrecision(3)}, median ${median.toPrecision(3)})`;
      const recheck = this.anotherReady(suspect.workerId)
        ? await this.recomputeNode(gather, suspect.node, new Set([suspect.workerId]))
        : undefined;
      if (!recheck) {
        log.warn(
          { worker: suspect.workerId, step: position.step },
          `${about} is an outlier, but no other worker can recompute it: kept`,
        );
        this.settings.hooks?.outlier?.('unverified', suspect.workerId);
        continue;
      }
      const agreement = await this.reducer.compare(gather, suspect, recheck);
      if (agreement.agree) {
        log.info(
          { worker: suspect.workerId, step: position.step, identical: agreement.identical },
          `${about} is an outlier, confirmed by another worker: kept`,
        );
        this.settings.hooks?.outlier?.('confirmed', suspect.workerId);
        continue;
      }
      const [again] = recheck.nodeOwners();
      rejected.add(suspect.key);
      gather.replace(suspect.key, recheck.reduceTo(suspect.node), again.worker);
      const detail = `${about} differs from another worker's recomputation (relative distance ${agreement.relativeDistance.toPrecision(3)}): rejected, the recomputation used`;
      const sender = pool.ready().find((s) => s.id === suspect.workerId);
      if (sender) sender.channel.reject('outlier', detail);
      else {
        this.settings.rejections.record('outlier');
        log.warn({ worker: suspect.workerId, reason: 'outlier' }, detail);
      }
      this.settings.hooks?.outlier?.('rejected', suspect.workerId);
    }
  }

  /** Node `node` of the step, computed whole by one ready worker not in `excluded`. */
  private async recomputeNode(
    gather: StepGather,
    node: TreeNode,
    excluded: Set<string>,
  ): Promise<StepGather | undefined> {
    const { position, batch } = gather;
    const range = nodeRange(node, batch.microBatches);
    const recheck = new StepGather(position, batch, this.geometry, this.reducer.nodePayloadSize, range);
    this.reducer.begin(recheck);
    const done = await this.runRecomputation(
      {
        kind: 'contribution',
        tracker: recheck.tracker,
        excluded,
        indivisible: true,
        accept: (s, m, p) => (m.type === 'contribution' ? this.reducer.admit(recheck, s, m, p) : undefined),
        send: this.assignFor(position, batch),
      },
      [range],
    );
    return done ? recheck : undefined;
  }

  /** Whether some ready worker other than `than` could compute an item again. */
  private anotherReady(than: string): boolean {
    return this.settings.pool.ready().some((s) => s.id !== than);
  }

  private backendOf(workerId: string): string | undefined {
    return this.workerBackends.get(workerId)?.backend;
  }

  /**
   * --verify-fraction on the step's nodes: each node the secret draw picks is computed again by another
   * worker before the step is applied, or by the coordinator itself when no other is ready. A mismatch goes
   * to the referee (the coordinator's own computation): whoever differs from it lied, is evicted for the run,
   * and the run goes back to before that worker's first unchecked node. Nodes not picked are noted as
   * unchecked: they are what a rollback must undo.
   */
  private async spotCheckNodes(gather: StepGather, verification: Verification, ledgerBefore: SampleLedger) {
    const { position } = gather;
    const owners = gather.nodeOwners();
    const picked = owners.filter((o) =>
      verification.checks.picks(`step ${position.step} node ${nodeKey(o)}`),
    );
    this.countChecks('node', owners.length, picked.length);
    for (const o of owners) if (!picked.includes(o)) this.anchors.unchecked(o.worker, position.step);
    for (const owner of picked) {
      const key = nodeKey(owner);
      const original = gather.sumOf(key)!;
      const recheck = this.anotherReady(owner.worker)
        ? await this.recomputeNode(gather, owner, new Set([owner.worker]))
        : undefined;
      const [again] = recheck?.nodeOwners() ?? [];
      const recomputed = recheck?.reduceTo(owner);
      const same = (a: string, b: string) => this.backendOf(a) === this.backendOf(b);
      if (
        recomputed &&
        compareNodes(original, recomputed, same(owner.worker, again.worker), original.samples).agree
      ) {
        this.settings.hooks?.spotCheck?.('node', 'match', 'worker');
        continue;
      }
      const range = nodeRange(owner, gather.batch.microBatches);
      const ref = await verification.referee.contribution(
        this.assignment(position, gather.batch, range),
        this.settings.state.weights,
      );
      const truth = { values: ref.payload, lossSum: ref.message.lossSum, correct: ref.message.correct };
      const { liars, honest } = this.judge(
        'node',
        `node [${range.first}, ${range.end}) of step ${position.step}`,
        recomputed
          ? [
              [owner.worker, original],
              [again.worker, recomputed],
            ]
          : [[owner.worker, original]],
        (result, exact) => compareNodes(result, truth, exact, original.samples),
        verification.referee.backend,
      );
      await this.afterLiars(liars);
      // Nothing of the liar's went in unchecked: only this node needs its honest version.
      if (liars.includes(owner.worker))
        if (recomputed && honest === again.worker) gather.replace(key, recomputed, honest);
        else await this.replaceByAnother(gather, owner, liars, ledgerBefore);
    }
  }

  /**
   * A liar's node that no honest worker has computed yet: another computes it now. With none left, the step
   * starts again once workers are ready: the referee's own values would carry its backend's bits into a run
   * its workers compute on another.
   */
  private async replaceByAnother(
    gather: StepGather,
    owner: TreeNode,
    liars: string[],
    ledgerBefore: SampleLedger,
  ): Promise<void> {
    const again = await this.recomputeNode(gather, owner, new Set(liars));
    if (!again) throw new LiarCaught(liars, anchorOf(this.settings.state, ledgerBefore));
    gather.replace(nodeKey(owner), again.reduceTo(owner), again.nodeOwners()[0].worker);
  }

  /**
   * --verify-fraction on an evaluation's test chunks, as for nodes (at least one of each worker's); a caught
   * liar's other chunks of the round are all computed again.
   */
  private async spotCheckChunks(gather: EvalGather, verification: Verification) {
    const owners = gather.chunkOwners().map((o) => ({ ...o, owner: o.worker }));
    const picked = verification.checks.picksEach(
      owners,
      (o) => `evaluation ${gather.round} chunk ${o.chunk}`,
    );
    this.countChecks('chunk', owners.length, picked.length);
    const liars = new Set<string>();
    const refereeChunk = async (chunk: number): Promise<ChunkResult> => {
      const ref = await verification.referee.evaluation(
        this.evaluateRequest(gather, { first: chunk, end: chunk + 1 }),
        this.settings.state.weights,
      );
      return { predictions: ref.payload, lossSum: ref.message.lossSums[0] };
    };
    for (const { chunk, worker } of picked) {
      if (liars.has(worker)) continue;
      const original = gather.chunkResult(chunk);
      const again = this.anotherReady(worker)
        ? await this.recomputeChunk(gather, chunk, new Set([worker]))
        : undefined;
      if (
        again &&
        compareChunks(original, again.result, this.backendOf(worker) === this.backendOf(again.worker)).agree
      ) {
        this.settings.hooks?.spotCheck?.('chunk', 'match', 'worker');
        continue;
      }
      const truth = await refereeChunk(chunk);
      const judged = this.judge(
        'chunk',
        `test chunk ${chunk} of evaluation ${gather.round}`,
        again
          ? [
              [worker, original],
              [again.worker, again.result],
            ]
          : [[worker, original]],
        (result, exact) => compareChunks(result, truth, exact),
        verification.referee.backend,
      );
      for (const liar of judged.liars) liars.add(liar);
    }
    if (liars.size === 0) return;
    // Every chunk a liar gave is computed again by the others, or by the referee when none is left.
    for (const { chunk, worker } of gather.chunkOwners()) {
      if (!liars.has(worker)) continue;
      const again = await this.recomputeChunk(gather, chunk, liars);
      if (again) gather.replaceChunk(chunk, again.result, again.worker);
      else gather.replaceChunk(chunk, await refereeChunk(chunk), 'referee');
    }
    await this.afterLiars([...liars]);
  }

  private countChecks(item: 'node' | 'chunk', total: number, checked: number): void {
    this.settings.hooks?.verified?.(item, total, checked);
    const totals = this.verificationTotals!;
    if (item === 'node') {
      totals.nodes += total;
      totals.nodesChecked += checked;
    } else {
      totals.chunks += total;
      totals.chunksChecked += checked;
    }
  }

  /**
   * An item's computations held against the referee's (`against`, exact where the backends are the same):
   * the sender's and, when another worker recomputed it and differed, that worker's. Whoever differs lied and
   * is evicted, the evidence in the log; returns the liars and the worker, if any, whose computation stands.
   */
  private judge<R>(
    item: 'node' | 'chunk',
    what: string,
    results: [worker: string, result: R][],
    against: (result: R, exact: boolean) => Comparison,
    refereeBackend: string,
  ): { liars: string[]; honest?: string } {
    const [[sentBy], recheck] = results;
    const verdicts = results.map(([worker, result]) => ({
      worker,
      verdict: against(result, this.backendOf(worker) === refereeBackend),
    }));
    const liars = verdicts.filter((v) => !v.verdict.agree);
    const mismatch = recheck !== undefined || liars.length > 0;
    this.settings.hooks?.spotCheck?.(
      item,
      mismatch ? 'mismatch' : 'match',
      recheck ? 'worker' : 'coordinator',
    );
    if (mismatch) this.verificationTotals!.mismatches++;
    if (recheck && liars.length === 0)
      this.settings.log.warn(
        { item, workers: [sentBy, recheck[0]] },
        `${what}: ${sentBy} and ${recheck[0]} differ, but each is within the tolerance of the coordinator's own computation: kept`,
      );
    const provenance = recheck
      ? `${sentBy} sent it, ${recheck[0]} recomputed it`
      : `${sentBy} sent it; no other worker was ready to recompute it`;
    for (const { worker, verdict } of liars)
      this.evictLiar(
        worker,
        `${what}: its result differs from the coordinator's own computation (${verdict.detail}); ${provenance}`,
      );
    return { liars: liars.map((l) => l.worker), honest: verdicts.find((v) => v.verdict.agree)?.worker };
  }

  /** Test chunk `chunk` of the evaluation, computed again by one ready worker not in `excluded`. */
  private async recomputeChunk(
    gather: EvalGather,
    chunk: number,
    excluded: Set<string>,
  ): Promise<{ result: ChunkResult; worker: string } | undefined> {
    const { test, model } = this.settings;
    const range = { first: chunk, end: chunk + 1 };
    const again = new EvalGather(gather.round, test.labels!, gather.chunkSize, model.classes, range);
    const done = await this.runRecomputation(
      {
        kind: 'evaluation',
        tracker: again.tracker,
        excluded,
        indivisible: true,
        accept: (s, m, p) => (m.type === 'evaluation' ? again.accept(s.id, m, p) : undefined),
        send: this.evaluateFor(again),
      },
      [range],
    );
    if (!done) return undefined;
    const [owner] = again.chunkOwners();
    return { result: again.chunkResult(chunk), worker: owner.worker };
  }

  /** runWork for a recomputation (a spec with `excluded`): false when no worker was left to do it. */
  private async runRecomputation(spec: WorkSpec, ranges: ItemRange[]): Promise<boolean> {
    try {
      await this.runWork(spec, ranges);
      return true;
    } catch (err) {
      if (err instanceof NoPeer) return false;
      throw err;
    }
  }

  private evictLiar(workerId: string, evidence: string): void {
    const { pool, log, hooks } = this.settings;
    log.error({ worker: workerId, reason: 'verification_failed' }, `worker ${workerId} lied: ${evidence}`);
    this.settings.rejections.record('verification_failed');
    // Caught twice in one step (two of its nodes checked): evicted once.
    if (this.verificationTotals!.evicted.includes(workerId)) return;
    const session = pool.ready().find((s) => s.id === workerId);
    if (session) pool.evict(session, `caught lying by a spot check (${evidence})`);
    else pool.bans.banForRun(workerId, `caught lying by a spot check (${evidence})`);
    this.verificationTotals!.evicted.push(workerId);
    hooks?.liarEvicted?.(workerId);
  }

  /** Liars evicted: if any of their nodes went in unchecked, the run goes back to before the first of them. */
  private async afterLiars(liars: string[]): Promise<void> {
    const anchors = liars.flatMap((id) => this.anchors.anchorFor(id) ?? []);
    if (anchors.length === 0) return;
    const earliest = anchors.reduce((a, b) => (b.state.step < a.state.step ? b : a));
    throw new LiarCaught(liars, earliest);
  }

  /** Before a step: a copy of the state to go back to, if a worker about to get work has no unchecked node yet. */
  private async anchorIfNeeded(): Promise<void> {
    if (!this.settings.verification) return;
    const { state, pool } = this.settings;
    if (
      !this.anchors.needed(
        pool.ready().map((s) => s.id),
        state.step,
      )
    )
      return;
    await this.reducer.sync();
    this.anchors.take(state, this.ledger);
  }

  /**
   * A caught liar's unchecked nodes are undone: the run goes back to the copy from before the first of them,
   * drops the checkpoints written since (they hold its work), and replays without it. Returns the samples
   * of the steps undone.
   */
  private async rewind(caught: LiarCaught): Promise<number> {
    const { state, log, pool } = this.settings;
    const saved = caught.anchor.state;
    const undone = state.step - saved.step;
    log.error(
      { liars: caught.liars, from_step: state.step, to_step: saved.step },
      `going back to step ${saved.step}, before the first unchecked node of ${caught.liars.join(', ')}, and replaying ${undone} step(s) without it`,
    );
    const { config } = state;
    Object.assign(state, saved, { config });
    this.ledger.restore(caught.anchor.ledger);
    for (const liar of caught.liars) this.anchors.rewound(saved.step, liar);
    this.pending = [];
    // Versions after the copy are sent again with other values: no worker holds them any more.
    for (const s of pool.ready()) {
      s.weightsVersion = -1;
      s.holdsVersion = -1;
    }
    await this.reducer.recover();
    await removeCheckpointsAfter(runPaths(this.settings.outDir).checkpoints, saved.step);
    if (this.lastCheckpoint && this.lastCheckpoint.step > saved.step) this.lastCheckpoint = undefined;
    this.replayedSteps += undone;
    this.settings.hooks?.rolledBack?.(undone);
    return samplesBefore(this.geometry, saved.step + undone) - samplesBefore(this.geometry, saved.step);
  }

  private async evaluate(): Promise<Evaluation> {
    const { test, model, state } = this.settings;
    if (!test.labels) throw new Error(`${test.name} has no labels to evaluate against`);
    const round = this.evalRound++;
    const gather = new EvalGather(round, test.labels, state.config.evalChunkSize, model.classes);
    await this.runWork({
      kind: 'evaluation',
      tracker: gather.tracker,
      accept: (s, m, p) => (m.type === 'evaluation' ? gather.accept(s.id, m, p) : undefined),
      send: this.evaluateFor(gather),
    });
    if (this.settings.verification) await this.spotCheckChunks(gather, this.settings.verification);
    const result = gather.result();
    const point = {
      step: state.step,
      samples: samplesBefore(this.geometry, state.step),
      accuracy: result.accuracy,
      loss: result.loss,
    };
    // A rewind or rollback undoes the steps after it: their evaluations go with them.
    while (this.evaluations.length > 0 && this.evaluations[this.evaluations.length - 1].step >= point.step)
      this.evaluations.pop();
    this.evaluations.push(point);
    this.settings.hooks?.evaluated?.(point);
    this.settings.log.info(
      { step: point.step, samples: point.samples, test_accuracy: point.accuracy, test_loss: point.loss },
      `evaluated at step ${point.step}: test accuracy ${(100 * point.accuracy).toFixed(2)}%`,
    );
    return result;
  }

  private evaluateFor(gather: EvalGather): WorkSpec['send'] {
    return (s, r) => s.channel.send(this.evaluateRequest(gather, r));
  }

  private evaluateRequest(gather: EvalGather, r: ItemRange): MessageOf<'evaluate'> {
    return {
      type: 'evaluate',
      round: gather.round,
      // assign() has made sure the worker holds the current weights.
      weightsVersion: this.settings.state.step,
      chunkSize: gather.chunkSize,
      first: r.first,
      count: r.end - r.first,
    };
  }

  private closeEpoch(epoch: number, evaluation: Evaluation, wallSeconds: number): void {
    const { state, log } = this.settings;
    const acc = state.epochAccumulator;
    const summary: EpochSummary = {
      epoch: epoch + 1,
      step: state.step,
      trainLoss: acc.lossSum / acc.samples,
      trainAccuracy: acc.correct / acc.samples,
      testLoss: evaluation.loss,
      testAccuracy: evaluation.accuracy,
      wallSeconds,
    };
    state.history.push(summary);
    state.epochAccumulator = emptyAccumulator();
    log.info(
      { ...summary },
      `epoch ${summary.epoch}: train loss ${summary.trainLoss.toFixed(4)}, test accuracy ${(evaluation.accuracy * 100).toFixed(2)}%`,
    );
    this.settings.hooks?.epoch?.(summary, evaluation);
  }

  private async checkpoint(): Promise<void> {
    const started = performance.now();
    await this.reducer.sync();
    const { meta, tensors } = stateToCheckpoint(this.settings.state);
    const { step } = this.settings.state;
    const path = await saveCheckpoint(runPaths(this.settings.outDir).checkpoints, step, meta, tensors, {
      keep: 3,
      log: this.settings.log,
      key: this.settings.checkpointKey,
    });
    this.lastCheckpoint = { step, path };
    this.ledgerAtCheckpoint = this.ledger.copy();
    this.settings.log.info({ path, step }, `checkpoint written: ${path}`);
    this.settings.hooks?.checkpoint?.({ step, path, seconds: (performance.now() - started) / 1000 });
  }

  /** Runs a unit of work to its end; `ranges`: the items to hand out (default: all of them). */
  private runWork(
    spec: WorkSpec,
    ranges: ItemRange[] = [{ first: 0, end: spec.tracker.items }],
  ): Promise<void> {
    const unit = new WorkUnit(spec);
    this.active = unit;
    this.deadlineTimer = setInterval(
      () => this.enforceDeadline(),
      Math.max(10, Math.min(1000, this.deadlineMs(unit) / 4)),
    );
    this.dispatch(ranges);
    return unit.settled.finally(() => clearInterval(this.deadlineTimer));
  }

  /** Work goes out once the worker holds this step's weights (its `holding` says so); until then it waits. */
  private assign(work: WorkUnit, session: WorkerSession, range: ItemRange): void {
    this.reducer.ensureWeights(session);
    if (session.holdsVersion !== this.settings.state.step) return work.hold(session.id, range);
    work.shares.started(session.id, performance.now());
    work.spec.send(session, range);
  }

  private onHolding(session: WorkerSession): void {
    const work = this.active;
    if (!work || session.holdsVersion !== this.settings.state.step) return;
    for (const range of work.takeHeld(session.id) ?? []) this.assign(work, session, range);
  }

  /**
   * How long a worker may hold its share of `work`: --step-deadline, per inner step in a round of local steps
   * (a replica computes H steps' worth before it can deliver anything).
   */
  private deadlineMs(work: WorkUnit): number {
    const local = this.settings.state.config.localSteps;
    return work.kind === 'contribution' && local
      ? local.steps * this.settings.stepDeadlineMs
      : this.settings.stepDeadlineMs;
  }

  /** A worker that still owes work past the deadline (hung, stopped, far too slow) loses it for this unit. */
  private enforceDeadline(): void {
    const work = this.active;
    if (!work) return;
    const now = performance.now();
    const deadline = this.deadlineMs(work);
    const ready = this.settings.pool.ready();
    for (const session of ready) {
      const at = work.assignedAt.get(session.id);
      if (at === undefined || now - at < deadline || !work.tracker.owesAnything(session.id)) continue;
      // Taking work from the only worker that could do it would just queue it behind itself: wait instead.
      if (!ready.some((s) => s !== session && !work.late.has(s.id))) continue;
      const orphaned = work.revokeLate(session.id);
      // It did not deliver these in the deadline: it is no faster than that, measured or not (its results may
      // come only after the unit has ended, when they measure nothing).
      if (work.kind === 'contribution') {
        const owed = orphaned.reduce((n, r) => n + r.end - r.first, 0);
        const bound = owed / (deadline / 1000);
        session.speed = Math.min(session.speed ?? bound, bound);
      }
      this.settings.log.warn(
        { worker: session.id, ranges: orphaned, deadline_s: deadline / 1000 },
        `worker ${session.id} missed the ${deadline / 1000} s deadline: its ${work.kind === 'contribution' ? 'micro-batches' : 'test chunks'} go to others`,
      );
      this.settings.hooks?.deadlineMissed?.(session);
      this.dispatch(orphaned);
    }
  }

  private dispatch(ranges: ItemRange[]): void {
    const work = this.active;
    if (!work) return;
    const ready = this.settings.pool.ready().filter((s) => !work.isExcluded(s.id));
    // A recomputation whose every possible worker is gone (left, or evicted while doing it) ends here: waiting
    // for a newcomer would hold the step up indefinitely.
    if (ready.length === 0 && work.spec.excluded) {
      this.active = undefined;
      return work.abort(new NoPeer());
    }
    if (ready.length === 0) {
      this.pending.push(...ranges);
      this.settings.log.warn('no worker is ready: the step waits for one to join');
      return;
    }
    const onTime = ready.filter((s) => !work.late.has(s.id));
    // When every ready worker was late, waiting for a new one could be forever: give them another chance.
    if (onTime.length === 0) work.late.clear();
    const eligible = onTime.length > 0 ? onTime : ready;
    const byId = new Map(eligible.map((s) => [s.id, s]));
    // A worker not yet measured is taken for a typical one: a fair share at once, not a probe's crumbs.
    const measured = eligible.flatMap((s) => (s.speed === undefined ? [] : [s.speed]));
    const typical = measured.length > 0 ? median(measured) : 1;
    const speeds = eligible.map((s) => ({
      id: s.id,
      speed: s.speed ?? typical,
      probe: s.idleSteps >= PROBE_AFTER_IDLE_STEPS,
    }));
    const now = performance.now();
    for (const range of ranges) {
      const blocks = work.spec.indivisible
        ? [{ workerId: fastest(speeds), first: range.first, count: range.end - range.first }]
        : splitRange(range.first, range.end, speeds);
      for (const block of blocks) {
        const r = { first: block.first, end: block.first + block.count };
        // The deadline runs from when it was first given work it has not finished, not from each addition.
        if (!work.tracker.owesAnything(block.workerId)) work.assignedAt.set(block.workerId, now);
        work.tracker.expect(block.workerId, r);
        this.assign(work, byId.get(block.workerId)!, r);
      }
    }
  }

  private onReady(session: WorkerSession): void {
    this.workerBackends.set(session.id, {
      backend: session.backend,
      ...(session.adapter && { adapter: session.adapter }),
    });
    this.settings.hooks?.workerReady?.(session);
    this.reducer.ensureWeights(session);
    if (this.active && this.pending.length > 0) this.dispatch(this.pending.splice(0));
  }

  private onLost(session: WorkerSession, reason: string): void {
    this.settings.hooks?.workerLost?.(session, reason);
    if (!this.active) return;
    this.active.forget(session.id);
    const orphaned = this.active.tracker.release(session.id);
    if (orphaned.length > 0) {
      this.settings.log.warn(
        { worker: session.id, ranges: orphaned },
        `reassigning the work of lost worker ${session.id}`,
      );
      this.dispatch(orphaned);
    }
  }

  /**
   * Micro-batches per second over its whole share (ShareTimer), on this coordinator's clock: what
   * sharding follows. Workers report compute times too, but a worker could claim to be fast and
   * take most of every step; it cannot make a result arrive sooner than it computed it.
   */
  private measureSpeed(work: WorkUnit, session: WorkerSession, microBatches: number): void {
    const share = work.shares.result(
      session.id,
      microBatches,
      work.tracker.owesAnything(session.id),
      performance.now(),
    );
    if (share) session.speed = updateSpeed(session.speed, share.items, share.seconds);
  }

  private onResult(session: WorkerSession, message: ResultMessage, payload: Float32Array): void {
    const work = this.active;
    const stale = () =>
      session.channel.reject('stale_result', `${message.type} arrived when none was expected`);
    if (!work || work.kind !== message.type) return stale();
    if (work.late.has(session.id)) {
      // Still a measurement: without it a worker that is always late keeps a fast estimate and a big share.
      if (message.type === 'contribution') this.measureSpeed(work, session, 2 ** message.level);
      return session.channel.reject(
        'late_result',
        `${message.type} from ${session.id} after it missed the deadline: already reassigned`,
      );
    }
    const verdict = work.spec.accept(session, message, payload);
    if (!verdict) return stale();
    this.conclude(work, session, message, verdict);
  }

  /**
   * A result's verdict taken: refused and reassigned, or counted (the unit ends with its last result);
   * pending: later.
   */
  private conclude(work: WorkUnit, session: WorkerSession, message: ResultMessage, verdict: Verdict): void {
    if (verdict.ok === 'pending') return;
    if (!verdict.ok) {
      session.channel.reject(verdict.reason, verdict.detail);
      if (verdict.reassign.length > 0) this.dispatch(verdict.reassign);
      return;
    }
    if (message.type === 'contribution') this.measureSpeed(work, session, 2 ** message.level);
    if (work.tracker.remaining === 0) {
      this.active = undefined;
      work.done();
    }
  }
}
