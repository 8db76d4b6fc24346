/**
 * Applies an averaged contribution (see ModelRunner.contribution in training/step/model-runner.ts) to the
 * weights: Adam on the trainable
 * parameters, a moving average of the batch statistics on BatchNorm's moving mean and variance.
 */
import { BATCH_NORM_MOMENTUM, type ParamLayout } from '../models/spec.js';
import { intersectInto } from '../parallel/shard-plan.js';
import { type AdamConfig, type AdamState, type ParamSlice, adamStep } from './adam.js';

export interface UpdateResult {
  weights: Float32Array;
  adam: AdamState;
}

export function trainableRanges(layout: ParamLayout): ParamSlice[] {
  return layout.entries.filter((e) => e.trainable).map(({ offset, size }) => ({ offset, size }));
}

/**
 * `window`: the buffers hold only this slice of the flat vector (a shard reducer's), and the layout's
 * entries are clipped to it. Every element sees the same float operations as in a whole-vector
 * update, so S shards together compute the bits one process would.
 */
export function applyUpdate(
  layout: ParamLayout,
  weights: Float32Array,
  contribution: Float32Array,
  adam: AdamState,
  config: AdamConfig,
  options: { momentum?: number; inPlace?: boolean; window?: ParamSlice } = {},
): UpdateResult {
  const {
    momentum = BATCH_NORM_MOMENTUM,
    inPlace = false,
    window = { offset: 0, size: layout.size },
  } = options;
  if (weights.length !== window.size)
    throw new Error(`applyUpdate: ${weights.length} weights for a window of ${window.size}`);
  const within = (e: ParamSlice) => intersectInto(e, window);
  const trainable = layout.entries.filter((e) => e.trainable).flatMap((e) => within(e) ?? []);
  const next = adamStep(weights, contribution, adam, config, trainable, inPlace);
  for (const e of layout.entries) {
    const part = e.trainable ? null : within(e);
    if (!part) continue;
    for (let i = part.offset, end = part.offset + part.size; i < end; i++) {
      next.weights[i] = momentum * next.weights[i] + (1 - momentum) * contribution[i];
    }
  }
  return { weights: next.weights, adam: next.state };
}
