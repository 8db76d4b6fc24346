/**
 * The checks every tree node's values pass before they enter a reduction, wherever it runs (the
 * coordinator, or a shard reducer on its slice): finite, and small enough that no sum or Adam's
 * square of the average can overflow.
 */
import type { RejectionReason } from '../../protocol/errors.js';
import { flatOps } from '../math/flat-ops.js';

/**
 * The largest |value| a node may carry. Finite is not enough: large finite sums overflow to ±Inf in
 * the float32 tree, and an average above ~1.8e19 squares to Inf in Adam's v. With every node within
 * 1e18, a sum of up to 2^31 nodes stays below 3e27 (finite) and the average, divided by at least as
 * many samples as nodes, below 1e18 (its square finite). Honest gradient sums are many orders of
 * magnitude smaller, so no honest step is affected (nor its weights' bits).
 */
export const MAX_NODE_ABS = 1e18;

/**
 * Why these values may not be reduced (`offset`: where they start in the flat vector, for the
 * message); null when they may. One pass: `!(|v| <= limit)` is true for NaN, ±Inf and the huge
 * alike, and only the first offender is looked at more closely (a shard checks 1/S of every node
 * on the step's critical path, the coordinator all of each).
 */
export function nodeValuesProblem(
  values: Float32Array,
  offset = 0,
): { reason: RejectionReason; detail: string } | null {
  const i = flatOps.firstOutside(values, MAX_NODE_ABS);
  if (i < 0) return null;
  const v = values[i];
  if (!Number.isFinite(v))
    return { reason: 'non_finite', detail: `contribution value ${offset + i} is ${v}` };
  return {
    reason: 'out_of_range',
    detail: `contribution value ${offset + i} is ${v}, beyond ±${MAX_NODE_ABS}`,
  };
}
