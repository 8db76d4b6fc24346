/**
 * ExactSquares: Σg² rounded once from the exact sum, so any cut of the vector into parts (shard
 * slices) and any order of adding them gives the same bits; --max-grad-norm's scale depends on them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExactSquares } from '../../training/optimizer/exact-squares.js';

/** Σ x² exactly, as a BigInt scaled by 2^400 (every float32 square is an integer multiple of 2^−298). */
function exactScaled(values: Float32Array): bigint {
  let sum = 0n;
  for (const x of values) {
    let m = Math.abs(x);
    if (m === 0) continue;
    let e = 0;
    while (!Number.isInteger(m)) {
      m *= 2;
      e--;
    }
    sum += (BigInt(m) * BigInt(m)) << BigInt(2 * e + 400);
  }
  return sum;
}

const float32s = fc.float32Array({ noNaN: true, noDefaultInfinity: true, minLength: 1, maxLength: 300 });

describe('ExactSquares', () => {
  it('is the exact sum rounded once, subnormals and huge values included', () => {
    fc.assert(
      fc.property(float32s, (values) => {
        const got = new ExactSquares().add(values, [{ offset: 0, size: values.length }]).total();
        expect(got).toBe(Number(exactScaled(values)) * 2 ** -400);
      }),
    );
  });

  it('gives the same bits for any cut into slices, merged in any order', () => {
    fc.assert(
      fc.property(float32s, fc.array(fc.nat(), { maxLength: 5 }), (values, cuts) => {
        const at = [...new Set(cuts.map((c) => c % values.length))].sort((a, b) => a - b);
        const bounds = [0, ...at.filter((c) => c > 0), values.length];
        const parts = bounds
          .slice(1)
          .map((end, i) => new ExactSquares().add(values, [{ offset: bounds[i], size: end - bounds[i] }]));
        const whole = new ExactSquares().add(values, [{ offset: 0, size: values.length }]).total();
        const forward = parts.reduce((acc, p) => acc.merge(p), new ExactSquares()).total();
        const backward = [...parts]
          .reverse()
          .reduce((acc, p) => acc.merge(p), new ExactSquares())
          .total();
        expect([forward, backward]).toEqual([whole, whole]);
      }),
    );
  });

  it('differs from a float64 running sum where that sum rounds, and is NaN when a value is not finite', () => {
    const values = new Float32Array([1, 2 ** -27, 2 ** -27, 2 ** -27, 2 ** -27]);
    let running = 0;
    for (const x of values) running += x * x;
    const exact = new ExactSquares().add(values, [{ offset: 0, size: values.length }]).total();
    expect(running).toBe(1);
    expect(exact).toBe(1 + 2 ** -52);
    expect(
      Number.isNaN(
        new ExactSquares().add(new Float32Array([1, Number.NaN]), [{ offset: 0, size: 2 }]).total(),
      ),
    ).toBe(true);
  });

  it('takes bins off the wire only at their count', () => {
    expect(() => new ExactSquares([1, 2, 3])).toThrow(/bins/);
  });
});
