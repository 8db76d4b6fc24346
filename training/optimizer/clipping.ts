/**
 * Global-norm clipping of the step's averaged gradient (--max-grad-norm), applied after the reduce
 * and its average, before Adam: the only place every worker count sees the same bits, so clipping
 * keeps weights bit-identical across worker counts. Pure apart from the in-place scaling it names.
 */
import type { ParamSlice } from '../training/optimizer/adam.js';
import { gradientNorm } from '../training/optimizer/gradient-norm.js';

export interface Clipped {
  /** L2 norm of the trainable part before clipping. */
  norm: number;
  /** The factor applied (1: left alone). */
  scale: number;
}

/**
 * When the trainable parameters' L2 norm (summed in float64, like gradientNorm) exceeds `maxNorm`,
 * scales them in place by maxNorm / norm; BatchNorm's batch statistics sharing the buffer are not
 * gradients and stay as they are. Each value is one float64 product rounded to float32, so the
 * result depends only on the input bits.
 */
export function clipGradientNorm(
  gradient: Float32Array,
  trainable: readonly ParamSlice[],
  maxNorm: number,
): Clipped {
  const norm = gradientNorm(gradient, trainable);
  if (!(norm > maxNorm)) return { norm, scale: 1 };
  const scale = maxNorm / norm;
  for (const { offset, size } of trainable) {
    for (let i = offset, end = offset + size; i < end; i++) gradient[i] *= scale;
  }
  return { norm, scale };
}
