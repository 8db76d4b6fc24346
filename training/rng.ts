/**
 * Seeded randomness for everything that must be reproducible across processes and machines:
 * data shuffles, dropout masks, weight initialisation. Plain 32-bit integer arithmetic only, so
 * the same seed gives the same bits in every JS engine.
 */

/** Murmur3's finaliser: a bijective avalanche on 32 bits. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Derives an independent 32-bit seed from a tuple, e.g. (runSeed, step, microBatch), so that a
 * mask or shuffle depends only on where it is used, never on how many draws came before it.
 */
export function deriveSeed(...parts: readonly number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    if (!Number.isInteger(p)) throw new Error(`deriveSeed: parts must be integers, got ${p}`);
    // Fold both halves so that integers above 2^32 still matter.
    h = fmix32(h ^ (p >>> 0));
    h = fmix32(h ^ Math.floor(p / 0x1_0000_0000));
  }
  return h;
}

/** mulberry32: tiny, fast, and its whole state is one uint32 (easy to checkpoint). */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** The state to store in a checkpoint; `new Rng(state)` continues the same stream. */
  get state(): number {
    return this.s;
  }

  nextUint32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  nextFloat(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  /** Uniform integer in [0, n), without modulo bias. */
  nextInt(n: number): number {
    if (!(n > 0 && n <= 0x1_0000_0000)) throw new Error(`nextInt: n out of range: ${n}`);
    const limit = 0x1_0000_0000 - (0x1_0000_0000 % n);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % n;
    }
  }

  /** Standard normal (Box–Muller); used for weight initialisation. */
  nextGaussian(): number {
    let u = 0;
    while (u === 0) u = this.nextFloat();
    const v = this.nextFloat();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

/** A seeded Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const rng = new Rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}
