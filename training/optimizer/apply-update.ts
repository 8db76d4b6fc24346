/**
 * Applies an averaged contribution (see ModelRunner.contribution in training/step/model-runner.ts) to the weights: Adam on the trainable
 * parameters, a moving average of the batch statistics on BatchNorm's moving mean and variance.
 */
import { BATCH_NORM_MOMENTUM, type ParamLayout } from '../models/spec.js';
import { type AdamConfig, type AdamState, type ParamSlice, adamStep } from './adam.js';

export interface UpdateResult {
  weights: Float32Array;
  adam: AdamState;
}

export function trainableRanges(layout: ParamLayout): ParamSlice[] {
  return layout.entries.filter((e) => e.trainable).map(({ offset, size }) => ({ offset, size }));
}

export function applyUpdate(
  layout: ParamLayout, weights: Float32Array, contribution: Float32Array, adam: AdamState, config: AdamConfig,
  options: { momentum?: number; inPlace?: boolean } = {},
): UpdateResult {
  const { momentum = BATCH_NORM_MOMENTUM, inPlace = false } = options;
  const next = adamStep(weights, contribution, adam, config, trainableRanges(layout), inPlace);
  for (const e of layout.entries) {
    if (e.trainable) continue;
    for (let i = e.offset, end = e.offset + e.size; i < end; i++) {
      next.weights[i] = momentum * next.weights[i] + (1 - momentum) * contribution[i];
    }
  }
  return { weights: next.weights, adam: next.state };
}
