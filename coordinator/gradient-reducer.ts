/**
 * The step's reduce → average → optimizer → publish path, behind one interface, in the spirit of
 * PyTorch DDP's communication hooks: the coordinator gathers and checks the tree nodes, a reducer
 * turns them into the next weights and gets those to the workers. `InProcessReducer` is the
 * single-process case (no extra hop, the bytes of a plain parameter server).
 */
import type { ParamLayout } from '../training/models/spec.js';
import type { ParamSlice } from '../training/optimizer/adam.js';
import { applyUpdate } from '../training/optimizer/apply-update.js';
import { gradientNorm } from '../training/optimizer/gradient-norm.js';
import { averageOf } from '../training/parallel/reduction-tree.js';
import { clipGradientNorm } from '../training/optimizer/clipping.js';
import type { StepPosition } from '../training/parallel/step-plan.js';
import { type RunState, updateRuleFor } from './run-state.js';
import type { StepGather, Verdict } from './step-gather.js';
import type { MessageOf } from '../protocol/messages.js';
import { type Agreement, type NodeNorm, nodesAgree } from './outliers.js';
import type { WorkerSession } from './worker-pool.js';
import type { WeightsBroadcast } from './weights-broadcast.js';

/** What a reduced step did: its sums (for the ledger and the epoch's figures) and its timings. */
export interface StepUpdate {
  lossSum: number;
  correct: number;
  samples: number;
  loss: number;
  accuracy: number;
  learningRate: number;
  /** L2 norm of the averaged gradient over trainable parameters; a pass over every value, paid on demand. */
  gradientNorm(): number;
  seconds: { reduce: number; optimizer: number; broadcast: number };
  /** The averaged gradient's norm before --max-grad-norm scaled it down (undefined: not clipped). */
  clippedFrom?: number;
}

/**
 * The reducer lost part of the run's state that it alone held (a shard reducer left with its slice of the Adam
 * moments): the coordinator rolls the run back to its newest checkpoint, asks the reducer to `recover`, and
 * replays.
 */
export class ReducerStateLost extends Error {
  override name = 'ReducerStateLost';
}

/** What a reducer may tell the coordinator between its calls. */
export interface ReducerHost {
  /** A node of `gather` whose verdict was pending (`admit` said so) is decided now. */
  concluded(
    gather: StepGather,
    session: WorkerSession,
    message: MessageOf<'contribution'>,
    verdict: Verdict,
  ): void;
  /** The work in flight cannot finish: the reducer lost state (its promise rejects with `err`). */
  failed(err: ReducerStateLost): void;
}

export interface GradientReducer {
  /**
   * Values each tree node's payload carries to the coordinator: the layout's size, or 0 where shard reducers
   * take them.
   */
  readonly nodePayloadSize: number;
  /** Processes that reduce (1: this one), for the run's summary. */
  readonly reducers: number;
  /**
   * True when the reducer holds state that only a checkpoint restores if it is lost: the run writes one before
   * its first step, so that it always has one to roll back to.
   */
  readonly losesState: boolean;
  /** Called once, by the coordinator that uses it. */
  attach(host: ReducerHost): void;
  /** Resolves once the reducer can take a step (and workers may join). */
  serving(): Promise<void>;
  /** The step gathered in `gather` begins: its nodes (and, sharded, their slices) may arrive from now on. */
  begin(gather: StepGather): void;
  /** A node of the step gathered in `gather`: taken, refused, or pending (decided later through the host). */
  admit(
    gather: StepGather,
    session: WorkerSession,
    message: MessageOf<'contribution'>,
    payload: Float32Array,
  ): Verdict;
  /** Every node of the step is in `gather`: reduce, average, step the optimizer, publish to `workers`. */
  apply(gather: StepGather, position: StepPosition, workers: readonly WorkerSession[]): Promise<StepUpdate>;
  /** The worker holds the current weights, or they are on their way to it. */
  ensureWeights(session: WorkerSession): void;
  /** Brings the run state's weights and Adam moments up to date (before a checkpoint or the summary). */
  sync(): Promise<void>;
  /** Each node's mean-gradient norm (--outlier-factor). */
  nodeNorms(gather: StepGather): NodeNorm[];
  /**
   * Node `suspect` of `gather` against `recheck`, another worker's recomputation of the same node (one node,
   * sent whole).
   */
  compare(gather: StepGather, suspect: NodeNorm, recheck: StepGather): Promise<Agreement>;
  /**
   * The run state was rolled back to a checkpoint after ReducerStateLost: take it up again; resolves once
   * serving.
   */
  recover(): Promise<void>;
}

export class InProcessReducer implements GradientReducer {
  readonly reducers = 1;
  readonly losesState = false;

  get nodePayloadSize(): number {
    return this.layout.size;
  }

  attach(): void {}

  begin(): void {}

  async serving(): Promise<void> {}

  admit(
    gather: StepGather,
    session: WorkerSession,
    message: MessageOf<'contribution'>,
    payload: Float32Array,
  ): Verdict {
    return gather.accept(session.id, message, payload);
  }

  nodeNorms(gather: StepGather): NodeNorm[] {
    return gather.nodeNorms(this.trainable);
  }

  async compare(gather: StepGather, suspect: NodeNorm, recheck: StepGather): Promise<Agreement> {
    return nodesAgree(gather.valuesOf(suspect.key)!, recheck.reduceTo(suspect.node).values);
  }

  /** Its state is the run's own, which never goes missing. */
  async recover(): Promise<void> {}

  /**
   * `trainable`: the layout's trainable slices (trainableRanges), which Adam, clipping and the norm cover.
   */
  constructor(
    private readonly state: RunState,
    private readonly layout: ParamLayout,
    private readonly trainable: readonly ParamSlice[],
    private readonly weights: WeightsBroadcast,
  ) {}

  ensureWeights(session: WorkerSession): void {
    this.weights.ensure(session);
  }

  /** The state is the reducer's own: always current. */
  async sync(): Promise<void> {}

  async apply(
    gather: StepGather,
    position: StepPosition,
    workers: readonly WorkerSession[],
  ): Promise<StepUpdate> {
    const { state, layout } = this;
    const t0 = performance.now();
    const root = gather.reduce();
    const { lossSum, correct, samples } = root;
    const average = averageOf(root);
    const clipped =
      state.config.maxGradNorm === null
        ? undefined
        : clipGradientNorm(average.values, this.trainable, state.config.maxGradNorm);
    const t1 = performance.now();
    const rule = updateRuleFor(state.config, position.epoch);
    const next = applyUpdate(layout, state.weights, average.values, state.adam, rule, { inPlace: true });
    state.weights = next.weights;
    state.adam = next.adam;
    state.step++;
    const t2 = performance.now();
    this.weights.publish(workers);
    const t3 = performance.now();
    return {
      lossSum,
      correct,
      samples,
      loss: average.loss,
      accuracy: average.accuracy,
      learningRate: rule.learningRate,
      gradientNorm: () => gradientNorm(average.values, this.trainable),
      seconds: { reduce: (t1 - t0) / 1000, optimizer: (t2 - t1) / 1000, broadcast: (t3 - t2) / 1000 },
      clippedFrom: clipped && clipped.scale < 1 ? clipped.norm : undefined,
    };
  }
}
