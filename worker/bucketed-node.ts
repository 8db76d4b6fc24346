/**
 * The sending side of --bucket-mb for one tree node: while the node's last micro-batch computes, backward
 * makes its values final range by range, last layers first. Each range is summed over the node's micro-batches
 * at once (training/parallel/reduction-tree.ts reduceRange: the whole reduce's bits), and every
 * `bucketValues` of the node's sums go out as a bucket, so they cross the link while backward goes on.
 */
import { flatOps } from '../training/math/flat-ops.js';
import {
  type NodeSum,
  type TreeNode,
  nodeKey,
  nodeRange,
  reduceRange,
  reduceScalars,
} from '../training/parallel/reduction-tree.js';

/** The last micro-batch's result, which the node's scalars need once it is done. */
export interface LastMicroBatch {
  loss: number;
  correct: number;
  count: number;
}

export class BucketedNode {
  /** Values [low, size) are final and summed; [low, high) of them wait for their bucket. */
  private low: number;
  private high: number;
  private buffer: Float32Array | undefined;
  /** Buckets sent so far. */
  buckets = 0;

  /**
   * `leaves`: the node's other micro-batches, already summed (leafSum), which the ranges are added into;
   * `last`: the index and sample count of the one computing. `send` gets each bucket's offset and values
   * (valid during the call).
   */
  constructor(
    private readonly node: TreeNode,
    private readonly microBatches: number,
    private readonly leaves: Map<string, NodeSum>,
    private readonly last: { index: number; count: number },
    size: number,
    private readonly bucketValues: number,
    private readonly send: (offset: number, values: Float32Array) => void,
  ) {
    this.low = size;
    this.high = size;
  }

  /**
   * Values [from, to) of the last micro-batch's mean contribution (in `values`, its buffer) are final. Ranges
   * come last first and meet: `to` is where the previous one began.
   */
  final(values: Float32Array, from: number, to: number): void {
    if (to !== this.low || from > to)
      throw new Error(`bucketed node: values [${from}, ${to}) made final after [${this.low}, …)`);
    if (from === to) return;
    flatOps.scaleInPlace(values.subarray(from, to), this.last.count);
    this.leaves.set(nodeKey({ level: 0, index: this.last.index }), {
      values,
      lossSum: 0,
      correct: 0,
      samples: this.last.count,
    });
    reduceRange(this.leaves, this.node, this.microBatches, from, to);
    // The sums land in the node's first micro-batch's buffer, as the whole reduce leaves them.
    const { first } = nodeRange(this.node, this.microBatches);
    this.buffer = this.leaves.get(nodeKey({ level: 0, index: first }))!.values;
    this.low = from;
    if (this.high - this.low >= this.bucketValues) this.flush();
  }

  /**
   * The last micro-batch is done: whatever backward did not report is final now, the rest goes out, and the
   * node's sums of loss, correct and samples are returned (its values went in the buckets).
   */
  finish(values: Float32Array, result: LastMicroBatch): NodeSum {
    this.final(values, 0, this.low);
    this.flush();
    this.leaves.set(nodeKey({ level: 0, index: this.last.index }), {
      values,
      lossSum: result.loss * result.count,
      correct: result.correct,
      samples: result.count,
    });
    return reduceScalars(this.leaves, this.node, this.microBatches);
  }

  private flush(): void {
    if (this.high === this.low || !this.buffer) return;
    this.send(this.low, this.buffer.subarray(this.low, this.high));
    this.buckets++;
    this.high = this.low;
  }
}
