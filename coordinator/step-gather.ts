/**
 * One step's gather: which tree nodes arrived from whom, checked against what each worker owes,
 * reduced over the fixed tree once every micro-batch is in.
 */
import type { RejectionReason } from '../protocol/errors.js';
import type { MessageOf } from '../protocol/messages.js';
import type { BatchGeometry, SampleSpan, StepBatch, StepPosition } from '../training/parallel/step-plan.js';
import { microBatchRange } from '../training/parallel/step-plan.js';
import { nodeValuesProblem } from '../training/parallel/node-values.js';
import {
  type NodeSum,
  type TreeNode,
  isValidNode,
  nodeKey,
  nodeRange,
  reduceNodes,
  rootLevel,
} from '../training/parallel/reduction-tree.js';
import type { ParamSlice } from '../training/optimizer/adam.js';
import { sumOfSquares } from '../training/optimizer/gradient-norm.js';
import type { NodeNorm } from './outliers.js';
import { type ItemRange, WorkTracker } from './work-tracker.js';

/**
 * `trained`: the epoch-order positions of the samples an accepted contribution covers. `pending`:
 * the coordinator's checks passed, and the node waits for its shard reducers' verdicts on its slices.
 */
export type Verdict =
  | { ok: true; trained?: SampleSpan & { microBatches: number } }
  | { ok: false; reason: RejectionReason; detail: string; reassign: ItemRange[] }
  | { ok: 'pending' };
export type Refusal = Extract<Verdict, { ok: false }>;

export { MAX_NODE_ABS } from '../training/parallel/node-values.js';

/** A node that came in buckets: who sent it, its compute, and when each bucket went (and, here, came). */
export interface BucketedArrival {
  worker: string;
  node: TreeNode;
  computeMs: number;
  /** Each bucket as the worker sent it: its values, and ms after the node's compute began (its clock). */
  sent: readonly { values: number; ms: number }[];
  /** When (performance.now()) each bucket arrived here; empty where shard reducers took them. */
  arrived: readonly number[];
}

export class StepGather {
  /** The step's nodes that came in buckets (--bucket-mb), as they arrived. */
  readonly bucketed: BucketedArrival[] = [];
  readonly tracker: WorkTracker;
  private readonly nodes = new Map<string, NodeSum>();
  /** Per worker: seconds of compute it reported for this step. */
  readonly computeSeconds = new Map<string, number>();
  /** Per worker: micro-batches of this step it delivered (its share, as it turned out). */
  readonly microBatchesBy = new Map<string, number>();
  /** Per worker: when (performance.now()) its last accepted node arrived. */
  readonly lastArrival = new Map<string, number>();

  /** Per node key: the worker whose contribution it is. */
  private readonly owners = new Map<string, string>();

  /**
   * `payloadSize`: values each node's payload must hold (the layout's size; 0 in a sharded run,
   * whose values go to the shard reducers). `only`: gather just these micro-batches of the step (a
   * recheck of a node), not the whole batch.
   */
  constructor(
    readonly position: StepPosition,
    readonly batch: StepBatch,
    private readonly geometry: BatchGeometry,
    private readonly payloadSize: number,
    only?: ItemRange,
  ) {
    this.tracker = new WorkTracker(batch.microBatches, only ? only.end - only.first : batch.microBatches);
  }

  /** Epoch-order positions of micro-batches [first, end) of this step. */
  private positionsOf(range: ItemRange): SampleSpan {
    return {
      start: microBatchRange(this.geometry, this.batch, range.first).start,
      end: microBatchRange(this.geometry, this.batch, range.end - 1).end,
    };
  }

  private samplesIn(range: ItemRange): number {
    const { start, end } = this.positionsOf(range);
    return end - start;
  }

  accept(workerId: string, message: MessageOf<'contribution'>, payload: Float32Array): Verdict {
    return this.check(workerId, message, payload) ?? this.settle(workerId, message, payload);
  }

  /** Why the node may not be taken (its range is revoked then), or null: settle() may take it. */
  check(workerId: string, message: MessageOf<'contribution'>, payload: Float32Array): Refusal | null {
    const refuse = (reason: RejectionReason, detail: string, reassign: ItemRange[] = []): Refusal => ({
      ok: false,
      reason,
      detail,
      reassign,
    });
    const { microBatches } = this.batch;
    if (message.step !== this.position.step)
      return refuse(
        'stale_result',
        `contribution for step ${message.step} during step ${this.position.step}`,
      );
    const node = { level: message.level, index: message.index };
    if (!isValidNode(node, microBatches))
      return refuse(
        'unexpected_message',
        `node ${nodeKey(node)} of step ${message.step} is not in a tree of ${microBatches} micro-batches (max level ${rootLevel(microBatches)})`,
        this.tracker.release(workerId),
      );
    const { first, end } = nodeRange(node, microBatches);
    const range = { first, end };
    // An honest worker sends only what it was given: one that sends another's node is not doing its own
    // share either, so the step stops waiting for it (its work goes to the others now, not at the deadline).
    if (!this.tracker.owes(workerId, range))
      return refuse(
        'unexpected_message',
        `micro-batches [${first}, ${end}) of step ${message.step} were not assigned to ${workerId} (or already arrived)`,
        this.tracker.release(workerId),
      );
    if (payload.length !== this.payloadSize)
      return refuse(
        'wrong_payload_size',
        `contribution has ${payload.length} values, ${this.payloadSize} expected`,
        this.tracker.revoke(workerId, range),
      );
    if (message.samples !== this.samplesIn(range))
      return refuse(
        'invalid_message',
        `node [${first}, ${end}) claims ${message.samples} samples, it has ${this.samplesIn(range)}`,
        this.tracker.revoke(workerId, range),
      );
    if (message.correct > message.samples)
      return refuse(
        'invalid_message',
        `node [${first}, ${end}) claims ${message.correct} correct of ${message.samples} samples`,
        this.tracker.revoke(workerId, range),
      );
    const problem = nodeValuesProblem(payload);
    if (problem)
      return refuse(
        problem.reason,
        `${problem.detail}; recomputing [${first}, ${end})`,
        this.tracker.revoke(workerId, range),
      );
    return null;
  }

  /** Notes when a node's buckets went and came, taken or not: their bytes crossed either way. */
  noteBuckets(worker: string, message: MessageOf<'contribution'>, arrived: readonly number[]): void {
    if (!message.bucketsSent) return;
    this.bucketed.push({
      worker,
      node: { level: message.level, index: message.index },
      computeMs: message.computeSeconds * 1000,
      sent: message.bucketsSent,
      arrived,
    });
  }

  /** Gives a node's range back to be assigned again (its slices were refused by a shard reducer). */
  revoke(workerId: string, node: TreeNode): ItemRange[] {
    const { first, end } = nodeRange(node, this.batch.microBatches);
    return this.tracker.revoke(workerId, { first, end });
  }

  /** Takes a node check() passed. */
  settle(workerId: string, message: MessageOf<'contribution'>, payload: Float32Array): Verdict {
    const node = { level: message.level, index: message.index };
    const { first, end } = nodeRange(node, this.batch.microBatches);
    const range = { first, end };
    this.tracker.settle(workerId, range);
    this.nodes.set(nodeKey(node), {
      values: payload,
      lossSum: message.lossSum,
      correct: message.correct,
      samples: message.samples,
    });
    this.owners.set(nodeKey(node), workerId);
    this.computeSeconds.set(workerId, (this.computeSeconds.get(workerId) ?? 0) + message.computeSeconds);
    this.lastArrival.set(workerId, performance.now());
    this.microBatchesBy.set(workerId, (this.microBatchesBy.get(workerId) ?? 0) + end - first);
    return { ok: true, trained: { ...this.positionsOf(range), microBatches: end - first } };
  }

  /** The nodes that make up the step, and whose each is: what shard reducers are told to reduce. */
  nodeOwners(): { level: number; index: number; worker: string }[] {
    return [...this.owners].map(([key, worker]) => {
      const [level, index] = key.split(':').map(Number);
      return { level, index, worker };
    });
  }

  get complete(): boolean {
    return this.tracker.remaining === 0;
  }

  reduce(): NodeSum {
    return this.reduceTo({ level: rootLevel(this.batch.microBatches), index: 0 });
  }

  /**
   * The sum over `node`'s micro-batches, from the nodes that arrived (consumes their buffers, as reduce
   * does).
   */
  reduceTo(node: TreeNode): NodeSum {
    return reduceNodes(this.nodes, node, this.batch.microBatches);
  }

  /**
   * Each arrived node's mean-gradient norm over the trainable parameters, and who sent it
   * (coordinator/outliers.ts); `squaresOf`: the node's Σg² over them (default: from its values).
   */
  nodeNorms(
    trainable: readonly ParamSlice[],
    squaresOf: (key: string, sum: NodeSum) => number = (_, sum) => sumOfSquares(sum.values, trainable),
  ): NodeNorm[] {
    return [...this.nodes].map(([key, sum]) => {
      const [level, index] = key.split(':').map(Number);
      return {
        key,
        node: { level, index },
        workerId: this.owners.get(key)!,
        meanNorm: Math.sqrt(squaresOf(key, sum)) / sum.samples,
      };
    });
  }

  /** Who sent node `key`. */
  ownerOf(key: string): string | undefined {
    return this.owners.get(key);
  }

  /** Node `key` as it arrived: values, loss, correct and samples. */
  sumOf(key: string): NodeSum | undefined {
    return this.nodes.get(key);
  }

  valuesOf(key: string): Float32Array | undefined {
    return this.nodes.get(key)?.values;
  }

  /** A node's contribution rejected after a recheck: the recomputed sum stands in its place. */
  replace(key: string, sum: NodeSum, workerId: string): void {
    this.nodes.set(key, sum);
    this.owners.set(key, workerId);
  }
}
