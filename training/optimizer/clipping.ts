/**
 * Global-norm clipping of the step's averaged gradient (--max-grad-norm), applied after the reduce
 * and its average, before Adam: the only place every worker count sees the same bits, so clipping
 * keeps weights bit-identical across worker counts. The norm is summed exactly (ExactSquares), so a
 * shard reducer that holds a slice and is told the combined norm's scale clips its slice to the
 * bits one process gets for the whole vector. Pure apart from the in-place scaling it names.
 */
import type { ParamSlice } from './adam.js';
import { ExactSquares } from './exact-squares.js';

export interface Clipped {
  /** L2 norm of the trainable part before clipping. */
  norm: number;
  /** The factor applied (1: left alone). */
  scale: number;
}

/** The factor that brings a gradient of L2 norm `norm` down to `maxNorm` (1 when it is within it). */
export function clipScale(norm: number, maxNorm: number): Clipped {
  return norm > maxNorm ? { norm, scale: maxNorm / norm } : { norm, scale: 1 };
}

/**
 * Scales `trainable` in place by `scale`; BatchNorm's batch statistics sharing the buffer are not gradients
 * and stay as they are. Each value is one float64 product rounded to float32.
 */
export function scaleTrainable(
  gradient: Float32Array,
  trainable: readonly ParamSlice[],
  scale: number,
): void {
  if (scale === 1) return;
  for (const { offset, size } of trainable) {
    for (let i = offset, end = offset + size; i < end; i++) gradient[i] *= scale;
  }
}

/**
 * When the trainable parameters' L2 norm exceeds `maxNorm`, scales them in place by maxNorm / norm. The result
 * depends only on the input bits.
 */
export function clipGradientNorm(
  gradient: Float32Array,
  trainable: readonly ParamSlice[],
  maxNorm: number,
): Clipped {
  const clipped = clipScale(Math.sqrt(new ExactSquares().add(gradient, trainable).total()), maxNorm);
  scaleTrainable(gradient, trainable, clipped.scale);
  return clipped;
}
