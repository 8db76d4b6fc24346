/**
 * Dropout masks drawn from a seed, not from tfjs's global RNG, so that a mask depends only on
 * (run seed, step, micro-batch, layer) and any worker computing a micro-batch draws the same one.
 * Masks are pre-scaled by 1/(1 − rate) (inverted dropout, as Keras does).
 */
import { Rng, deriveSeed } from '../rng.js';

export interface DropoutMask {
  values: Float32Array;
  /** [N, 1, 1, C] for spatial dropout (whole feature maps), [N, units] otherwise. */
  shape: number[];
}

export function dropoutMask(
  seed: number,
  layerIndex: number,
  batch: number,
  featureShape: readonly number[],
  rate: number,
  spatial: boolean,
): DropoutMask {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropout rate must be in [0, 1), got ${rate}`);
  const channels = featureShape[featureShape.length - 1];
  const shape = spatial ? [batch, 1, 1, channels] : [batch, ...featureShape];
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  const keep = 1 / (1 - rate);
  const rng = new Rng(deriveSeed(seed, layerIndex));
  for (let i = 0; i < size; i++) values[i] = rng.nextFloat() < rate ? 0 : keep;
  return { values, shape };
}
