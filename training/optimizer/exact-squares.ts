/**
 * Σ g² over float32 values, exactly: the same bits whatever order the values are summed in and however
 * the vector is cut into parts. --max-grad-norm's scale depends on the norm's last bit, and shard
 * reducers each see only a slice, so a float64 running sum (which depends on where the slices start)
 * would make clipped runs differ with the shard count.
 *
 * Each float32 is m × 2^(e − 150) with an integer m < 2^24. Its square's integer part m² is kept as
 * three parts below 2^24 (m = h·2^12 + l: h², h·l, l²) in one bin per exponent e. A float64 bin adds
 * 2^29 such parts before it could round, far more than any model here has values, so every bin is an
 * exact integer; adding two accumulators bin by bin is exact too. Only `total` rounds, once, from
 * the exact sum to the nearest float64.
 */
// Exponent bins (float32 exponents 1..254, subnormals in bin 1) × three parts: the wire holds the count.
import { SQUARES_BINS } from '../../protocol/messages.js';
import type { ParamSlice } from './adam.js';

/** Values one accumulator may hold and still be exact (each part < 2^24, a bin < 2^53). */
const MAX_VALUES = 2 ** 29;

export class ExactSquares {
  readonly bins: Float64Array;
  /** Values added (exactness bound) and whether any was NaN or ±Inf (the sum is then not finite). */
  private count = 0;
  private nonFinite = false;

  constructor(bins?: ArrayLike<number>) {
    if (bins && bins.length !== SQUARES_BINS)
      throw new RangeError(`squares need ${SQUARES_BINS} bins, got ${bins.length}`);
    this.bins = bins ? Float64Array.from(bins) : new Float64Array(SQUARES_BINS);
  }

  /** Adds the squares of `values[slice]` for each slice (offsets into `values`). */
  add(values: Float32Array, slices: readonly ParamSlice[]): this {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    const { bins } = this;
    for (const { offset, size } of slices) {
      this.count += size;
      if (this.count > MAX_VALUES) throw new RangeError(`more than ${MAX_VALUES} values in one sum`);
      for (let i = offset, end = offset + size; i < end; i++) {
        const b = bits[i];
        const e = (b >>> 23) & 0xff;
        if (e === 0xff) {
          this.nonFinite = true;
          continue;
        }
        const m = e === 0 ? b & 0x7fffff : (b & 0x7fffff) | 0x800000;
        if (m === 0) continue;
        const h = m >>> 12;
        const l = m & 0xfff;
        const at = (e === 0 ? 0 : e - 1) * 3;
        bins[at] += h * h;
        bins[at + 1] += h * l;
        bins[at + 2] += l * l;
      }
    }
    return this;
  }

  /** Adds another accumulator's bins (another slice's squares), exactly. */
  merge(other: ExactSquares): this {
    for (let i = 0; i < SQUARES_BINS; i++) this.bins[i] += other.bins[i];
    this.count += other.count;
    this.nonFinite ||= other.nonFinite;
    return this;
  }

  /** The exact sum, rounded once to the nearest float64 (ties to even); NaN when a value was not finite. */
  total(): number {
    if (this.nonFinite) return Number.NaN;
    // Bin k holds exponent e = k + 1: m² · 2^(2(e − 150)) = m² · 2^(2k) · 2^−298.
    let sum = 0n;
    for (let k = 254; k >= 0; k--) {
      const at = k * 3;
      const parts =
        (BigInt(this.bins[at]) << 24n) + (BigInt(this.bins[at + 1]) << 13n) + BigInt(this.bins[at + 2]);
      sum += parts << BigInt(2 * k);
    }
    // Number(bigint) rounds to nearest, ties to even; the power of two is exact while the sum stays normal.
    return Number(sum) * 2 ** -298;
  }
}
