/**
 * What the coordinator tells its observers (progress bars, metrics, benchmarks) as a run goes:
 * the reports it makes and the hooks that receive them.
 */
import type { StepPosition } from '../training/parallel/step-plan.js';
import type { Evaluation } from '../training/step/evaluate.js';
import type { EpochSummary } from './run-state.js';
import type { ShardReport } from './shard-set.js';
import type { WorkerSession } from './worker-pool.js';

export interface StepReport {
  position: StepPosition;
  stepsPerEpoch: number;
  /** Samples in this step, and in a whole epoch. */
  samples: number;
  epochSamples: number;
  loss: number;
  accuracy: number;
  workers: number;
  learningRate: number;
  /**
   * L2 norm of the averaged gradient (trainable parameters). A function, computed on demand: it is a
   * pass over every parameter, paid only by observers that show it, and only during the hook.
   */
  gradientNorm(): number;
  /** Wall seconds of the step, and of each phase of it. */
  seconds: { total: number; gather: number; reduce: number; optimizer: number; broadcast: number };
  /**
   * Per worker that contributed: wall seconds from the step's start to its last node, and the compute it
   * reported.
   */
  workerSeconds: Map<string, number>;
  computeSeconds: Map<string, number>;
  /** Per worker: micro-batches it delivered this step. */
  workerMicroBatches: Map<string, number>;
  /** Per ready worker: its measured speed in micro-batches per second (what sharding follows). */
  workerSpeeds: Map<string, number>;
  /** The averaged gradient's norm before --max-grad-norm scaled it down (undefined: not clipped). */
  clippedFrom?: number;
  /**
   * A round of local steps (--local-steps): the inner steps its replicas took and their Adam learning rate.
   * `learningRate` is then the outer step's, and `gradientNorm` the norm of the replicas' mean delta.
   */
  local?: { innerSteps: number; innerLearningRate: number };
  /**
   * Gradient values the workers handed to their links while backward still ran (buckets, --bucket-mb) and
   * after it had ended (the last bucket, and every node sent whole).
   */
  gradientValues: { duringBackward: number; afterBackward: number };
  /** Per node that came in buckets: when each went and, where the coordinator took them, came (ms). */
  buckets: NodeBucketTimes[];
}

export interface NodeBucketTimes {
  worker: string;
  /** `level:index` of the tree node. */
  node: string;
  compute_ms: number;
  /** Per bucket: its values, and when it went, in ms after the node's compute began (the worker's clock). */
  values: number[];
  sent_ms: number[];
  /** When each arrived, in ms after the step's work went out (the coordinator's clock); [] when shards took them. */
  arrived_ms: number[];
}

/** A test evaluation, and how far the run had trained when it was taken. */
export interface EvaluationPoint {
  step: number;
  /** Samples trained on by then, since the run's start (a resumed run's included). */
  samples: number;
  accuracy: number;
  loss: number;
}

export const OUTLIER_VERDICTS = ['confirmed', 'rejected', 'unverified'] as const;
type OutlierVerdict = (typeof OUTLIER_VERDICTS)[number];

/** A spot check (--verify-fraction): the recomputation matched, or it differed (the referee then named the liar). */
export const SPOT_CHECK_OUTCOMES = ['match', 'mismatch'] as const;
type SpotCheckOutcome = (typeof SPOT_CHECK_OUTCOMES)[number];
/** Who recomputed a spot-checked item: another worker, or the coordinator itself when no other was ready. */
export const SPOT_CHECKERS = ['worker', 'coordinator'] as const;
type SpotChecker = (typeof SPOT_CHECKERS)[number];
export const SPOT_CHECK_ITEMS = ['node', 'chunk'] as const;
type SpotCheckItem = (typeof SPOT_CHECK_ITEMS)[number];

interface CheckpointReport {
  step: number;
  path: string;
  seconds: number;
}

/** Seconds spent in each phase of the steps run so far. */
export interface PhaseTotals {
  steps: number;
  /** From handing out work to the last node arriving. */
  gather: number;
  /** The slowest worker's reported compute, per step. */
  compute: number;
  reduce: number;
  optimizer: number;
  broadcast: number;
}

/** What the coordinator tells its observers (progress bars, metrics); each hook is optional. */
export interface CoordinatorHooks {
  /**
   * Every tree node of the step has arrived: reduce, optimizer and broadcast follow. Until the new
   * weights go out, nothing of the step is still on the wire (each worker had its weights before it
   * could send a node), which is when a benchmark can read the network's counters cleanly.
   */
  gathered?(position: StepPosition): void;
  step?(report: StepReport): void;
  epoch?(summary: EpochSummary, evaluation: Evaluation): void;
  checkpoint?(report: CheckpointReport): void;
  workerReady?(session: WorkerSession): void;
  workerLost?(session: WorkerSession, reason: string): void;
  /** A test evaluation ended (each epoch's, and every --eval-every steps). */
  evaluated?(point: EvaluationPoint): void;
  /** The run paused (too few workers) or went on. */
  paused?(paused: boolean): void;
  /** A worker did not deliver its share in time and lost it for this step. */
  deadlineMissed?(session: WorkerSession): void;
  /** A worker became, or stopped being, a persistent straggler. */
  straggler?(workerId: string, isStraggler: boolean): void;
  /**
   * An outlier node was rechecked (--outlier-factor): kept as confirmed, rejected, or kept for want of
   * another worker.
   */
  outlier?(verdict: OutlierVerdict, workerId: string): void;
  /** Items that went in this step or evaluation (nodes or test chunks): `checked` of them were recomputed. */
  verified?(item: SpotCheckItem, total: number, checked: number): void;
  /** A spot check's outcome, and who recomputed the item. */
  spotCheck?(item: SpotCheckItem, outcome: SpotCheckOutcome, by: SpotChecker): void;
  /** A worker was caught lying and evicted for the run. */
  liarEvicted?(workerId: string): void;
  /** Shard reducers connected changed (sharded runs). */
  shardsConnected?(count: number): void;
  /** Each shard's report of a step it reduced: its phases and bytes. */
  shardsReduced?(reports: ShardReport[]): void;
  /** A shard reducer left; the run rolls back. */
  shardLost?(shardId: string, reason: string): void;
  /**
   * The run went back to its newest checkpoint (a shard reducer was lost): `steps` steps are undone and will
   * be replayed.
   */
  rolledBack?(steps: number): void;
}

type HookName = keyof CoordinatorHooks;

/**
 * Every hook's name. A record over all of CoordinatorHooks' keys: a hook added there and left off here
 * does not compile, where it would otherwise be silently dropped by combineHooks.
 */
const EVERY_HOOK: { readonly [K in HookName]-?: true } = {
  gathered: true,
  step: true,
  epoch: true,
  checkpoint: true,
  workerReady: true,
  workerLost: true,
  evaluated: true,
  paused: true,
  deadlineMissed: true,
  straggler: true,
  outlier: true,
  verified: true,
  spotCheck: true,
  liarEvicted: true,
  shardsConnected: true,
  shardsReduced: true,
  shardLost: true,
  rolledBack: true,
};

/** One set of hooks, every one of them present, that calls each given set's hook in turn. */
export function combineHooks(...all: Array<CoordinatorHooks | undefined>): Required<CoordinatorHooks> {
  const sets = all.filter((h): h is CoordinatorHooks => h !== undefined);
  const callEach =
    (key: HookName) =>
    (...args: unknown[]): void => {
      for (const hooks of sets) (hooks[key] as ((...a: unknown[]) => void) | undefined)?.(...args);
    };
  return Object.fromEntries(
    Object.keys(EVERY_HOOK).map((key) => [key, callEach(key as HookName)]),
  ) as Required<CoordinatorHooks>;
}
