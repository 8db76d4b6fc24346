/** The pure parts of robust aggregation: clipping, the outlier rule and the recheck's agreement test. */
import { describe, expect, it } from 'vitest';
import { clipGradientNorm } from '../../training/optimizer/clipping.js';
import { RECHECK_TOLERANCE, flagOutliers, nodesAgree } from '../../coordinator/outliers.js';

describe('clipGradientNorm', () => {
  const trainable = [{ offset: 0, size: 2 }];

  it('scales the trainable values to the max norm, and leaves the batch statistics alone', () => {
    const g = Float32Array.of(3, 4, 100); // norm 5 over [0, 2); value 2 is a moving statistic
    expect(clipGradientNorm(g, trainable, 1)).toEqual({ norm: 5, scale: 0.2 });
    expect([...g]).toEqual([Math.fround(0.6), Math.fround(0.8), 100]);
  });

  it('leaves a gradient within the bound bit for bit', () => {
    const g = Float32Array.of(0.3, -0.4, 7);
    const before = g.slice();
    expect(clipGradientNorm(g, trainable, 0.6)).toEqual({ norm: expect.closeTo(0.5, 6), scale: 1 });
    expect(g).toEqual(before);
  });

  it('takes the norm from the exact Σg², rounded once, in any order of the ranges: the bits computed here another way', () => {
    // 2^27 and a thousand ones: Σg² = 2^54 + 1000 exactly, while a float64 running sum that starts
    // with the big square loses every 1 (the spacing there is 4) and gives a norm of exactly 2^27.
    const values = [2 ** 27, ...Array.from({ length: 1000 }, () => 1)];
    const g = Float32Array.from([...values, 100]); // the last value: a moving statistic, left alone
    const ranges = [
      { offset: 0, size: 1 },
      { offset: 1, size: 1000 },
    ];
    const norm = exactNorm(values);
    expect(norm).not.toBe(naiveNorm(values)); // the case tells an exact sum from a running one
    const expected = Float32Array.from([...values.map((x) => x * (0.5 / norm)), 100]);
    for (const order of [ranges, [...ranges].reverse()]) {
      const clipped = g.slice();
      expect(clipGradientNorm(clipped, order, 0.5)).toEqual({ norm, scale: 0.5 / norm });
      expect(bitsOf(clipped)).toEqual(bitsOf(expected));
    }
  });
});

const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/**
 * √(Σx²) with the sum exact (BigInt: every float32 is an integer multiple of 2^-149) and rounded to
 * float64 once (Number(bigint) rounds to nearest), independent of training/optimizer/exact-squares.ts.
 */
function exactNorm(values: readonly number[]): number {
  let sum = 0n;
  for (const x of values) {
    const q = BigInt(Math.fround(x) * 2 ** 149);
    sum += q * q;
  }
  return Math.sqrt(Number(sum) * 2 ** -298);
}

const naiveNorm = (values: readonly number[]) => Math.sqrt(values.reduce((s, x) => s + x * x, 0));

describe('flagOutliers', () => {
  const node = (index: number, meanNorm: number) => ({
    key: `0:${index}`,
    node: { level: 0, index },
    workerId: `w${index}`,
    meanNorm,
  });

  it('flags nodes above factor × the median, naming their sender', () => {
    const { flagged, median } = flagOutliers([node(0, 1), node(1, 1.2), node(2, 0.9), node(3, 50)], 5);
    expect(median).toBeCloseTo(1.1);
    expect(flagged.map((n) => n.workerId)).toEqual(['w3']);
  });

  it('flags nothing in an honest step, nor with a single node to compare', () => {
    expect(flagOutliers([node(0, 1), node(1, 2.5), node(2, 0.4)], 3).flagged).toEqual([]);
    expect(flagOutliers([node(0, 1e9)], 3).flagged).toEqual([]);
  });
});

describe('nodesAgree', () => {
  it('same bits agree; a relative distance within the tolerance agrees; beyond it does not', () => {
    const a = Float32Array.of(1, 2, 3);
    expect(nodesAgree(a, a.slice())).toEqual({ agree: true, identical: true, relativeDistance: 0 });
    const near = Float32Array.of(1, 2, 3 * (1 + RECHECK_TOLERANCE / 10));
    expect(nodesAgree(a, near)).toMatchObject({ agree: true, identical: false });
    const scaled = a.map((x) => x * 1000);
    expect(nodesAgree(scaled, a)).toMatchObject({ agree: false, identical: false });
    expect(nodesAgree(scaled, a).relativeDistance).toBeCloseTo(0.999, 3);
    expect(nodesAgree(a, Float32Array.of(1, 2)).agree).toBe(false);
  });
});
