/**
 * Gradients read out layer by layer as backward makes them, for a worker that sends them in buckets while
 * backward goes on (--bucket-mb). Each trainable parameter passes through an identity whose gradient is
 * read into the contribution's buffer as the engine reaches it: right after the parameter's layer's own
 * backward, since forward recorded the identity just before that layer (models/forward.ts `param`). Once a
 * layer's last gradient is in (and its BatchNorm statistics beside them), its range of the layout is final.
 *
 * The identity changes no value: the layer computes on the same data, and the gradient it passes on is the
 * one it was given, so the bits are those of the one-shot backward.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readIntoSync } from '../backends/read-flat.js';
import type { ParamLayout } from '../models/spec.js';
import type { ValuesFinal } from './model-runner.js';

type BatchStats = ReadonlyMap<number, { mean: tf.Tensor1D; variance: tf.Tensor1D }>;

export class LayerGradients {
  /** Per layer with parameters: trainable gradients still to come. */
  private readonly left = new Map<number, number>();
  /** Per layer: [from, to) of its parameters in the layout. */
  private readonly ranges = new Map<number, [number, number]>();

  /**
   * `values`: the contribution being filled; `stats()`: the forward pass's batch statistics, read once backward
   * runs (after forward has made them).
   */
  constructor(
    private readonly layout: ParamLayout,
    readonly values: Float32Array,
    private readonly final: ValuesFinal,
    private readonly stats: () => BatchStats,
  ) {
    for (const e of layout.entries) {
      const range = this.ranges.get(e.layer) ?? [e.offset, e.offset];
      range[1] = e.offset + e.size;
      this.ranges.set(e.layer, range);
      if (e.trainable) this.left.set(e.layer, (this.left.get(e.layer) ?? 0) + 1);
    }
  }

  /** Parameter `index` (of the layout), as its layer is about to use it: an identity that reports its gradient. */
  readonly watch = (index: number, tensor: tf.Tensor): tf.Tensor =>
    tf.customGrad((...[x]: Array<tf.Tensor | tf.GradSaveFunc>) => ({
      value: tf.clone(x as tf.Tensor),
      gradFunc: (dy: tf.Tensor) => {
        this.arrived(index, dy);
        return tf.clone(dy);
      },
    }))(tensor);

  /** Every layer's range was told final (what a finished backward must have done). */
  get complete(): boolean {
    return [...this.left.values()].every((n) => n === 0);
  }

  private arrived(index: number, gradient: tf.Tensor): void {
    const entry = this.layout.entries[index];
    readIntoSync(gradient, this.values.subarray(entry.offset, entry.offset + entry.size));
    const left = this.left.get(entry.layer)! - 1;
    this.left.set(entry.layer, left);
    if (left > 0) return;
    const batchStats = this.stats().get(entry.layer);
    for (const e of this.layout.entries) {
      if (e.layer !== entry.layer || e.trainable) continue;
      if (!batchStats) throw new Error(`internal: no batch statistics for ${e.name}`);
      const s = e.role === 'movingMean' ? batchStats.mean : batchStats.variance;
      readIntoSync(s, this.values.subarray(e.offset, e.offset + e.size));
    }
    const [from, to] = this.ranges.get(entry.layer)!;
    this.final(this.values, from, to);
  }
}
