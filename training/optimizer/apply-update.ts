/**
 * Applies an averaged contribution to the weights, by the run's update rule:
 * - `adam` (synchronous steps): the contribution is the mean gradient with BatchNorm's batch statistics
 *   (ModelRunner.contribution in training/step/model-runner.ts): Adam on the trainable parameters, a moving
 *   average of the batch statistics on BatchNorm's moving mean and variance;
 * - `nesterov` (local steps, training/step/local-steps.ts): the contribution is the replicas' mean delta
 *   (round start − round end): the outer Nesterov step on the trainable parameters (outer.ts), and BatchNorm's
 *   moving statistics become the replicas' mean (start − mean delta).
 * Either way the optimizer's state is an AdamState: Nesterov keeps its momentum buffer in `m` (it is a first
 * moment too) and leaves `v` at zero, so checkpoints and shard reducers hold one shape of state.
 */
import { BATCH_NORM_MOMENTUM, type ParamLayout } from '../models/spec.js';
import { intersectInto } from '../parallel/shard-plan.js';
import { type AdamConfig, type AdamState, type ParamSlice, adamStep } from './adam.js';
import { type NesterovConfig, nesterovStep } from './outer.js';
import { unreachable } from '../../common/exhaustive.js';

export type UpdateRule = ({ kind: 'adam' } & AdamConfig) | ({ kind: 'nesterov' } & NesterovConfig);

export const adamRule = (config: AdamConfig): UpdateRule => ({ kind: 'adam', ...config });

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
  rule: UpdateRule,
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
  const next = optimizerStep(weights, contribution, adam, rule, trainable, inPlace);
  for (const e of layout.entries) {
    const part = e.trainable ? null : within(e);
    if (!part) continue;
    const w = next.weights;
    for (let i = part.offset, end = part.offset + part.size; i < end; i++) {
      w[i] =
        rule.kind === 'adam' ? momentum * w[i] + (1 - momentum) * contribution[i] : w[i] - contribution[i];
    }
  }
  return { weights: next.weights, adam: next.state };
}

function optimizerStep(
  weights: Float32Array,
  contribution: Float32Array,
  adam: AdamState,
  rule: UpdateRule,
  trainable: readonly ParamSlice[],
  inPlace: boolean,
): { weights: Float32Array; state: AdamState } {
  switch (rule.kind) {
    case 'adam':
      return adamStep(weights, contribution, adam, rule, trainable, inPlace);
    case 'nesterov': {
      const w = inPlace ? weights : weights.slice();
      const m = inPlace ? adam.m : adam.m.slice();
      nesterovStep(w, contribution, m, rule, trainable);
      return { weights: w, state: { step: adam.step + 1, m, v: adam.v } };
    }
    default:
      return unreachable(rule, 'update rule');
  }
}
