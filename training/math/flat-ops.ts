/**
 * The elementwise loops over parameter-sized buffers that every step runs outside the model: a
 * leaf's scaling, the tree's sums, the average, the value checks and Adam. On mnist-cnn each is
 * 3.5 M elements several times a step, which JS loops take ~10 ms for and the addon's SIMD ~1 ms.
 *
 * Two implementations with the same bits: float32 ×, + and ÷ of float32 values are correctly
 * rounded whether computed in float32 (the addon) or in float64 and rounded (JS), and Adam is
 * float64 per element in the same order in both. So a worker with the addon and a coordinator
 * without it still agree on every weight; test/training/flat-ops.test.ts holds them to that.
 */
import { loadNativeAddon } from '../kernels/native/addon.js';

export interface AdamScalars {
  beta1: number;
  beta2: number;
  epsilon: number;
  /** The learning rate with the step's bias corrections folded in. */
  stepSize: number;
}

export interface FlatOps {
  readonly name: 'native' | 'js';
  scaleInPlace(a: Float32Array, k: number): void;
  /** a += b. */
  addInto(a: Float32Array, b: Float32Array): void;
  divideInPlace(a: Float32Array, d: number): void;
  /** The first index whose |value| is not ≤ limit (NaN, ±Inf, too large), or −1. */
  firstOutside(a: Float32Array, limit: number): number;
  /** One Adam update of equal-length slices, in place. */
  adamUpdate(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamScalars): void;
}

function sameLength(...arrays: Float32Array[]): void {
  for (const a of arrays) {
    if (a.length !== arrays[0].length)
      throw new RangeError(`buffers differ in length (${arrays[0].length} vs ${a.length})`);
  }
}

export const jsFlatOps: FlatOps = {
  name: 'js',
  scaleInPlace(a, k) {
    for (let i = 0; i < a.length; i++) a[i] *= k;
  },
  addInto(a, b) {
    sameLength(a, b);
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  },
  divideInPlace(a, d) {
    for (let i = 0; i < a.length; i++) a[i] = a[i] / d;
  },
  firstOutside(a, limit) {
    for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i]) <= limit)) return i;
    return -1;
  },
  adamUpdate(w, g, m, v, { beta1, beta2, epsilon, stepSize }) {
    sameLength(w, g, m, v);
    for (let i = 0; i < w.length; i++) {
      const gi = g[i];
      const mi = beta1 * m[i] + (1 - beta1) * gi;
      const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      w[i] = w[i] - (stepSize * mi) / (Math.sqrt(vi) + epsilon);
    }
  },
};

/** The addon's loops, or null (with the reason) when it is not built. */
export function nativeFlatOps(): FlatOps | null {
  const { addon } = loadNativeAddon();
  if (!addon) return null;
  return {
    name: 'native',
    scaleInPlace: (a, k) => addon.scaleInPlace(a, k),
    addInto: (a, b) => addon.addInto(a, b),
    divideInPlace: (a, d) => addon.divideInPlace(a, d),
    firstOutside: (a, limit) => addon.firstOutside(a, limit),
    adamUpdate: (w, g, m, v, s) => addon.adamUpdate(w, g, m, v, [s.beta1, s.beta2, s.epsilon, s.stepSize]),
  };
}

/** What the step's loops run on: the addon where it loaded, else JS. */
export const flatOps: FlatOps = nativeFlatOps() ?? jsFlatOps;
