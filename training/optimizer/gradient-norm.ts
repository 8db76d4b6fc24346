/**
 * The L2 norm of a gradient over the trainable parameters only (BatchNorm's batch statistics share the
 * buffer).
 */
import type { ParamSlice } from './adam.js';

/**
 * Σ g² over `trainable`, summed in float64: 3.5M float32 squares would lose digits in a float32 accumulator.
 */
export function sumOfSquares(gradient: Float32Array, trainable: readonly ParamSlice[]): number {
  let sum = 0;
  for (const { offset, size } of trainable) {
    for (let i = offset, end = offset + size; i < end; i++) sum += gradient[i] * gradient[i];
  }
  return sum;
}

export function gradientNorm(gradient: Float32Array, trainable: readonly ParamSlice[]): number {
  return Math.sqrt(sumOfSquares(gradient, trainable));
}
