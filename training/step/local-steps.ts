/**
 * A replica's share of a round of local steps (DiLoCo-style): from the round's global weights it takes up to
 * `steps` inner Adam steps, each on the next `batchSize` samples of its micro-batch, and contributes its delta
 * (start − end). The reduction tree sums the replicas' deltas like gradients (scaled by their samples), and
 * the outer step (optimizer/outer.ts) applies their mean.
 *
 * Everything a replica does is derived from the run config and (round, replica, inner step): its samples are a
 * fixed span of the epoch's permutation, its dropout seeds come from its micro-batch seed, and its inner Adam
 * starts from zero moments every round. So whichever worker computes it, and however often (after a worker is
 * lost, the round is redone elsewhere), it gives the same bits. Keeping Adam's moments across rounds would tie
 * a replica to state that lives on one worker (or cost 2 × the model per replica on the wire each round).
 */
import type { ParamLayout } from '../models/spec.js';
import { type AdamConfig, type AdamState, createAdamState } from '../optimizer/adam.js';
import { adamRule, applyUpdate } from '../optimizer/apply-update.js';
import { deriveSeed } from '../rng.js';
import type { Contribution, MicroBatch, MicroBatchRunner, ValuesFinal } from './model-runner.js';

/** How a replica's micro-batch is trained: what the welcome's `localSteps` carries. */
export interface LocalSteps {
  steps: number;
  /** Samples per inner step. */
  batchSize: number;
  /** The inner Adam, at the run's learning rate; lrDecay^epoch scales it. */
  adam: AdamConfig;
  lrDecay: number;
}

/** How a replica takes its inner steps. */
export interface InnerSteps {
  adam: AdamConfig;
  /** Samples per inner step. */
  batchSize: number;
  /**
   * The inner Adam's moments to start from, left updated in place. Absent (every cluster run): zero moments,
   * a fresh state each round. Given, a caller can carry them across rounds (scripts/inner-state.ts measures
   * what that would buy).
   */
  moments?: AdamState;
}

/** The inner Adam of a round in `epoch`. */
export const innerAdam = (local: LocalSteps, epoch: number): AdamConfig => ({
  ...local.adam,
  learningRate: local.adam.learningRate * local.lrDecay ** epoch,
});

/**
 * Inner steps a round of `samples` takes: replicas of `steps` × `batchSize` samples, the last one possibly
 * short (an epoch's last round), each inner step `batchSize` samples but its last.
 */
export function innerStepsOfRound(samples: number, local: Pick<LocalSteps, 'steps' | 'batchSize'>): number {
  const replicaSamples = local.steps * local.batchSize;
  const whole = Math.floor(samples / replicaSamples);
  return whole * local.steps + Math.ceil((samples - whole * replicaSamples) / local.batchSize);
}

/** Dropout seed of inner step `innerStep` of the replica whose micro-batch seed is `replicaSeed`. */
export const innerStepSeed = (replicaSeed: number, innerStep: number): number =>
  deriveSeed(replicaSeed, innerStep);

/**
 * The replica's contribution: values are its delta (start − end), loss the mean of its inner steps' losses
 * over its samples, correct their sum. The runner holds `start` again when it returns (the next replica, or an
 * evaluation, computes with the round's weights). `into`: a buffer the caller no longer needs, for the delta.
 *
 * `final` (--bucket-mb): during the last inner step, each layer's update is applied as soon as backward has
 * its gradient, and that layer's delta is told final at once, so it can leave while backward goes on. Every
 * element sees the same operations as in the update of the whole vector: the same bits.
 */
export async function replicaContribution(
  runner: MicroBatchRunner,
  start: Float32Array,
  batch: MicroBatch,
  replicaSeed: number,
  inner: InnerSteps,
  into?: Float32Array,
  final?: ValuesFinal,
): Promise<Contribution> {
  const layout: ParamLayout = runner.layout;
  const { adam, batchSize } = inner;
  const pixels = batch.images.length / Math.max(1, batch.count);
  const weights = start.slice();
  const moments = inner.moments ?? createAdamState(layout.size);
  const rule = adamRule(adam);
  const delta = into?.length === layout.size ? into : new Float32Array(layout.size);
  // One inner step's update of [from, to), the values of its gradient there; Adam's step count moves once.
  const update = (gradient: Float32Array, from: number, to: number) => {
    const part = (a: Float32Array) => a.subarray(from, to);
    applyUpdate(
      layout,
      part(weights),
      part(gradient),
      { step: moments.step, m: part(moments.m), v: part(moments.v) },
      rule,
      { inPlace: true, window: { offset: from, size: to - from } },
    );
  };
  const deltaOf = (from: number, to: number) => {
    for (let i = from; i < to; i++) delta[i] = start[i] - weights[i];
  };
  const steps = Math.ceil(batch.count / batchSize);
  // The last step's ranges come last layers first, each ending where the one before began: [0, done) is left.
  let done = layout.size;
  let scratch: Float32Array | undefined;
  let lossSum = 0;
  let correct = 0;
  try {
    for (let h = 0; h < steps; h++) {
      const at = h * batchSize;
      const count = Math.min(batchSize, batch.count - at);
      if (h > 0) runner.setWeights(weights);
      const early: ValuesFinal | undefined =
        final && h === steps - 1
          ? (gradient, from, to) => {
              update(gradient, from, to);
              deltaOf(from, to);
              done = Math.min(done, from);
              final(delta, from, to);
            }
          : undefined;
      const c = await runner.contribution(
        {
          images: batch.images.subarray(at * pixels, (at + count) * pixels),
          labels: batch.labels.subarray(at, at + count),
          count,
        },
        innerStepSeed(replicaSeed, h),
        scratch,
        early,
      );
      update(c.values, 0, done);
      moments.step++;
      scratch = c.values;
      lossSum += c.loss * count;
      correct += c.correct;
    }
  } finally {
    runner.setWeights(start);
  }
  deltaOf(0, done);
  return { values: delta, loss: lossSum / batch.count, correct, count: batch.count };
}
