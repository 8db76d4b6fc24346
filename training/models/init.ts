/**
 * Seeded initial weights with Keras' defaults: Glorot-uniform kernels, zero biases, BN γ=1, β=0, μ=0, σ²=1.
 */
import { Rng, deriveSeed } from '../rng.js';
import { type ModelSpec, type ParamEntry, paramLayout } from './spec.js';

function fans(entry: ParamEntry): [number, number] {
  const s = entry.shape;
  if (s.length === 4) return [s[0] * s[1] * s[2], s[0] * s[1] * s[3]];
  return [s[0], s[1]];
}

export function initialWeights(model: ModelSpec, seed: number): Float32Array {
  const layout = paramLayout(model);
  const weights = new Float32Array(layout.size);
  layout.entries.forEach((entry, index) => {
    const view = weights.subarray(entry.offset, entry.offset + entry.size);
    switch (entry.role) {
      case 'kernel': {
        const [fanIn, fanOut] = fans(entry);
        const limit = Math.sqrt(6 / (fanIn + fanOut));
        const rng = new Rng(deriveSeed(seed, index));
        for (let i = 0; i < view.length; i++) view[i] = (rng.nextFloat() * 2 - 1) * limit;
        break;
      }
      case 'gamma':
      case 'movingVariance':
        view.fill(1);
        break;
      default:
        view.fill(0);
    }
  });
  return weights;
}
