/**
 * Runs one model on the active tfjs backend: holds the current weights as tensors (uploaded once
 * per weights version, shared by every micro-batch of a step), computes a micro-batch's
 * contribution, and predicts.
 *
 * A contribution is a flat buffer in the weights' layout: the gradient of the micro-batch's mean
 * loss for trainable parameters, and the micro-batch's BatchNorm statistics in the moving-mean and
 * moving-variance slots. Averaging contributions (over micro-batches, workers, a reduction tree)
 * therefore averages both at once; optimizer/apply-update.ts gives each slot its meaning.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFlat } from '../backends/read-flat.js';
import { forward } from '../models/forward.js';
import { type ModelSpec, type ParamLayout, paramLayout } from '../models/spec.js';
import { LayerGradients } from './layer-gradients.js';

export interface MicroBatch {
  /** count × H × W × 1 normalised pixels. */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

export interface Contribution {
  values: Float32Array;
  /** Mean cross-entropy over the micro-batch. */
  loss: number;
  correct: number;
  count: number;
  /** Ms it spent waiting for weights still arriving (weightsIn): not compute. */
  weightsWaitMs?: number;
}

/**
 * Told by a runner whose backward goes layer by layer: values [from, to) of the contribution it is filling
 * (`values`) are final. Ranges come last layers first, each ending where the one before began; what is never
 * told is final when the contribution returns.
 */
export type ValuesFinal = (values: Float32Array, from: number, to: number) => void;

/** Resolves once weights [from, to) of the version being computed with are in (they arrive front layers first). */
export type WeightsIn = (from: number, to: number) => Promise<void>;

/**
 * What computes micro-batches for a worker: the tfjs model (ModelRunner) or a stand-in
 * (backends/synthetic.ts). Everything above it (the reduction tree, the wire) is the same for both.
 */
export interface MicroBatchRunner {
  readonly layout: ParamLayout;
  /**
   * True for a runner whose forward goes layer by layer and waits for each layer's weights (weightsIn): it is
   * given weights still arriving. Others are given them once all are in.
   */
  readonly layerByLayer?: boolean;
  setWeights(weights: Float32Array): void;
  /**
   * The micro-batch's contribution. `seed` is derived from (run seed, step, micro-batch) alone
   * (step-plan.ts dropoutSeed), so whoever computes the micro-batch gets the same bits. `into`: a
   * buffer of layout.size the caller no longer needs, which the runner may fill and return as
   * `values` instead of allocating (14 MB per mnist-cnn micro-batch, and the collections they cost).
   */
  contribution(
    batch: MicroBatch,
    seed: number,
    into?: Float32Array,
    final?: ValuesFinal,
    weightsIn?: WeightsIn,
  ): Contribution | Promise<Contribution>;
  /** Inference-mode logits, count × classes. */
  logits(images: Float32Array, count: number): Float32Array | Promise<Float32Array>;
  dispose(): void;
}

export class ModelRunner implements MicroBatchRunner {
  readonly layout: ParamLayout;
  private params: tf.Tensor[] = [];
  private readonly trainable: number[];

  constructor(readonly model: ModelSpec) {
    this.layout = paramLayout(model);
    this.trainable = this.layout.entries.flatMap((e, i) => (e.trainable ? [i] : []));
  }

  setWeights(weights: Float32Array): void {
    if (weights.length !== this.layout.size) {
      throw new Error(
        `${this.model.name}: weights have ${weights.length} values, the layout needs ${this.layout.size}`,
      );
    }
    const next = this.layout.entries.map((e) =>
      tf.tensor(weights.subarray(e.offset, e.offset + e.size), [...e.shape], 'float32'),
    );
    this.disposeParams();
    this.params = next;
  }

  private inputTensor(images: Float32Array, count: number): tf.Tensor4D {
    const [h, w, c] = this.model.inputShape;
    if (images.length !== count * h * w * c) {
      throw new Error(
        `${this.model.name}: ${count} images need ${count * h * w * c} values, got ${images.length}`,
      );
    }
    return tf.tensor4d(images, [count, h, w, c]);
  }

  private requireWeights(): void {
    if (this.params.length === 0) throw new Error(`${this.model.name}: setWeights() before computing`);
  }

  /**
   * Everything stays on the device until one readback: the gradients and batch statistics
   * concatenated in the layout's order (the contribution, as it goes on the wire), and the loss
   * with the logits. A GPU backend pays a host round trip per readback, so none happen per tensor
   * (backends with a faster way, the wasm family's copy out of its heap, supply it: backends/read-flat.ts).
   */
  async contribution(
    batch: MicroBatch,
    dropoutSeed: number,
    into?: Float32Array,
    final?: ValuesFinal,
  ): Promise<Contribution> {
    this.requireWeights();
    const { count, labels } = batch;
    if (labels.length !== count) throw new Error(`micro-batch: ${count} images but ${labels.length} labels`);
    for (let i = 0; i < count; i++) {
      if (labels[i] >= this.model.classes)
        throw new Error(`micro-batch: label ${labels[i]} at ${i} is not a class of ${this.model.name}`);
    }
    // The loss function runs in a scope of its own: what it makes besides the loss must be kept.
    const kept: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => {
      kept.push(tf.keep(t));
      return t;
    };
    // Layer by layer where a gradient can be read at once (a GPU's readback would stall its queue each time).
    const layerwise =
      final && tf.getBackend() !== 'webgpu'
        ? new LayerGradients(
            this.layout,
            into?.length === this.layout.size ? into : new Float32Array(this.layout.size),
            final,
            () => stats,
          )
        : undefined;
    let stats = new Map<number, { mean: tf.Tensor1D; variance: tf.Tensor1D }>();
    try {
      const { parts, summary } = tf.tidy(() => {
        let logits: tf.Tensor2D | undefined;
        const x = this.inputTensor(batch.images, count);
        const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), this.model.classes);
        const lossOf = (...trainable: tf.Tensor[]): tf.Scalar => {
          const params = [...this.params];
          this.trainable.forEach((p, i) => (params[p] = trainable[i]));
          const out = forward(this.model, this.layout, params, x, {
            training: true,
            dropoutSeed,
            param: layerwise?.watch,
          });
          logits = keep(out.logits);
          for (const s of out.batchStats.values()) {
            keep(s.mean);
            keep(s.variance);
          }
          stats = out.batchStats;
          return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(out.logits)), -1)));
        };
        const { value, grads } = tf.valueAndGrads(lossOf)(this.trainable.map((p) => this.params[p]));
        const gradOf = new Map(this.trainable.map((p, i) => [p, grads[i]]));
        const parts = this.layout.entries.map((e, p) => {
          if (e.trainable) return gradOf.get(p)!;
          const s = stats.get(e.layer);
          if (!s || (e.role !== 'movingMean' && e.role !== 'movingVariance'))
            throw new Error(`internal: no batch statistics for ${e.name}`);
          return e.role === 'movingMean' ? s.mean : s.variance;
        });
        return { parts, summary: tf.concat([value.reshape([1]), logits!.reshape([-1])]) as tf.Tensor1D };
      });
      try {
        if (layerwise && !layerwise.complete)
          throw new Error(`internal: backward did not reach every layer of ${this.model.name}`);
        const [values, head] = await Promise.all([
          layerwise?.values ?? readFlat(parts, into),
          summary.data() as Promise<Float32Array>,
        ]);
        return {
          values,
          loss: head[0],
          correct: countCorrect(head.subarray(1), labels, this.model.classes),
          count,
        };
      } finally {
        tf.dispose([...parts, summary]);
      }
    } finally {
      tf.dispose(kept);
    }
  }

  /** Inference-mode logits (moving statistics, no dropout), count × classes. */
  async logits(images: Float32Array, count: number): Promise<Float32Array> {
    this.requireWeights();
    const out = tf.tidy(
      () =>
        forward(this.model, this.layout, this.params, this.inputTensor(images, count), { training: false })
          .logits,
    );
    try {
      return (await out.data()) as Float32Array;
    } finally {
      out.dispose();
    }
  }

  private disposeParams(): void {
    tf.dispose(this.params);
    this.params = [];
  }

  dispose(): void {
    this.disposeParams();
  }
}

export function argmaxRows(logits: Float32Array, classes: number): Uint8Array {
  const rows = logits.length / classes;
  const out = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c;
    out[r] = best;
  }
  return out;
}

function countCorrect(logits: Float32Array, labels: Uint8Array, classes: number): number {
  const predicted = argmaxRows(logits, classes);
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct++;
  return correct;
}

/**
 * The one-shot form: a micro-batch's contribution under the given weights. A worker computing many
 * micro-batches per weights version keeps a ModelRunner instead (the upload happens once).
 */
export async function computeContribution(
  model: ModelSpec,
  weights: Float32Array,
  batch: MicroBatch,
  dropoutSeed: number,
): Promise<Contribution> {
  const runner = new ModelRunner(model);
  try {
    runner.setWeights(weights);
    return await runner.contribution(batch, dropoutSeed);
  } finally {
    runner.dispose();
  }
}
