/**
 * `--backend synthetic`: a compute stand-in that does not train a model. Each micro-batch takes a
 * fixed wall time spent waiting (a timer, no CPU; spread over its layers as synthetic-schedule.ts says,
 * telling a worker that sends buckets when each layer's values are final), then returns a pseudo-gradient with the model's
 * real flat layout, seeded by (run seed, step, micro-batch) alone. So everything around compute
 * (sharding, the reduction tree, the wire, Adam, checkpoints, metrics) runs for real and still
 * gives the same weights_sha256 for any worker count, while a 2-core machine can stand in for a
 * cluster of GPU machines (bench scale) or a test can drive a coordinator fast.
 *
 * Its loss and accuracy are placeholders, those of a model that always predicts the uniform
 * distribution: all logits 0, so the loss is ln(classes) (2.3026 for MNIST) on every step and the
 * accuracy is the share of class-0 labels (argmax of equal logits is the first class).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type ModelSpec, type ParamLayout, type ParamRole, paramLayout } from '../models/spec.js';
import type {
  Contribution,
  MicroBatch,
  MicroBatchRunner,
  ValuesFinal,
  WeightsIn,
} from '../step/model-runner.js';
import { FORWARD_SHARE, type SyntheticLayerTime, syntheticSchedule } from './synthetic-schedule.js';

export const SYNTHETIC_BACKEND = 'synthetic';

/**
 * Default wall time of one micro-batch: 1 Gbit/s links at 500 ms compute ≈ 10 Gbit/s at 50 ms (a GPU step).
 */
export const DEFAULT_SYNTHETIC_MS = 500;

/**
 * [centre, half-width] of the uniform values per parameter role: gradients of a mean loss around
 * 1e-3, BatchNorm batch means near 0 and batch variances near 1 (they are blended into the moving
 * statistics, so they must stay plausible and the variances positive).
 */
const VALUE_RANGE: Record<ParamRole, readonly [number, number]> = {
  kernel: [0, 1e-3],
  bias: [0, 1e-3],
  gamma: [0, 1e-3],
  beta: [0, 1e-3],
  movingMean: [0, 0.1],
  movingVariance: [1, 0.5],
};

/**
 * Fills `out` with the pseudo-contribution for `seed`: a 32-bit LCG (Numerical Recipes), read from
 * its top bits. Not a good generator, but 5× faster than mulberry32 (~7 ms for mnist-cnn's 3.5M
 * values), and all that is needed is values that look like a gradient and depend on the seed.
 */
export function fillSyntheticContribution(
  layout: ParamLayout,
  seed: number,
  out: Float32Array,
): Float32Array {
  if (out.length !== layout.size)
    throw new Error(
      `synthetic contribution: buffer of ${out.length} values, the layout needs ${layout.size}`,
    );
  let s = seed >>> 0;
  for (const e of layout.entries) {
    const [centre, half] = VALUE_RANGE[e.role];
    const scale = (2 * half) / 0x1_0000_0000;
    const low = centre - half;
    for (let i = e.offset, end = e.offset + e.size; i < end; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      out[i] = low + s * scale;
    }
  }
  return out;
}

export class SyntheticRunner implements MicroBatchRunner {
  readonly layout: ParamLayout;
  readonly layerByLayer = true;
  private readonly schedule: readonly SyntheticLayerTime[];

  /** `microBatchMs`: the wall time of each micro-batch, generation included (0: as fast as possible). */
  constructor(
    readonly model: ModelSpec,
    private readonly microBatchMs: number,
  ) {
    if (!(microBatchMs >= 0 && Number.isFinite(microBatchMs)))
      throw new RangeError(`synthetic micro-batch time must be ≥ 0 ms, got ${microBatchMs}`);
    this.layout = paramLayout(model);
    this.schedule = syntheticSchedule(model, this.layout, microBatchMs);
  }

  setWeights(weights: Float32Array): void {
    if (weights.length !== this.layout.size)
      throw new Error(
        `${this.model.name}: weights have ${weights.length} values, the layout needs ${this.layout.size}`,
      );
  }

  async contribution(
    batch: MicroBatch,
    seed: number,
    into?: Float32Array,
    final?: ValuesFinal,
    weightsIn?: WeightsIn,
  ): Promise<Contribution> {
    // The waits run to deadlines, so the micro-batch takes microBatchMs whatever generating cost; a layer
    // whose weights are not in yet starts when they are, and what follows moves with it.
    const started = performance.now();
    // A timer may fire a fraction of a millisecond early (libuv counts whole ms): wait again for the rest.
    const until = async (deadline: number) => {
      for (let left = deadline - performance.now(); left > 0; left = deadline - performance.now())
        await sleep(left);
    };
    const values = fillSyntheticContribution(
      this.layout,
      seed,
      into?.length === this.layout.size ? into : new Float32Array(this.layout.size),
    );
    let correct = 0;
    for (let i = 0; i < batch.count; i++) if (batch.labels[i] === 0) correct++;
    let at = started;
    let weightsWaitMs = 0;
    if (weightsIn)
      for (const layer of this.schedule) {
        const asked = performance.now();
        await weightsIn(layer.from, layer.to);
        // Only a real wait moves the schedule: a timer's lateness must not add up layer after layer.
        const now = performance.now();
        if (now - asked > 1 && now > at) {
          weightsWaitMs += now - at;
          at = now;
        }
        at += layer.forwardMs;
        await until(at);
      }
    else at += this.microBatchMs * FORWARD_SHARE;
    // Backward, last layer first: each layer's values are final as its share of the time ends.
    for (const layer of this.schedule.toReversed()) {
      at += layer.backwardMs;
      if (!final || layer.from === layer.to) continue;
      await until(at);
      final(values, layer.from, layer.to);
    }
    await until(at);
    return { values, loss: Math.log(this.model.classes), correct, count: batch.count, weightsWaitMs };
  }

  logits(_images: Float32Array, count: number): Float32Array {
    return new Float32Array(count * this.model.classes);
  }

  dispose(): void {}
}
