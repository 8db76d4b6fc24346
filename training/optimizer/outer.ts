/**
 * The outer optimizer of local steps (DiLoCo, Douillard et al. 2023): SGD with Nesterov momentum applied
 * to the replicas' averaged delta (round start − round end), which stands in for a gradient. PyTorch's
 * formulation: buf ← μ·buf + δ; w ← w − lr·(δ + μ·buf). Float64 per element, stored as float32, like Adam
 * (adam.ts): the same inputs give the same bits on every machine.
 */
import type { ParamSlice } from './adam.js';

export interface NesterovConfig {
  learningRate: number;
  momentum: number;
}

/** DiLoCo's published outer settings. */
export const DEFAULT_OUTER: NesterovConfig = { learningRate: 0.7, momentum: 0.9 };

/** One outer step over `ranges` of `weights`, in place; `buffer` is the momentum, updated in place. */
export function nesterovStep(
  weights: Float32Array,
  delta: Float32Array,
  buffer: Float32Array,
  config: NesterovConfig,
  ranges: readonly ParamSlice[],
): void {
  if (delta.length !== weights.length || buffer.length !== weights.length)
    throw new Error(
      `nesterovStep: size mismatch (weights ${weights.length}, delta ${delta.length}, momentum ${buffer.length})`,
    );
  const { learningRate: lr, momentum: mu } = config;
  for (const { offset, size } of ranges) {
    for (let i = offset, end = offset + size; i < end; i++) {
      const d = delta[i];
      const b = mu * buffer[i] + d;
      buffer[i] = b;
      weights[i] = weights[i] - lr * (d + mu * b);
    }
  }
}
