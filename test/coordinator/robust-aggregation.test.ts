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

  it('leaves a gradient within the bound bit for bit, and gives the same bits for the same input', () => {
    const g = Float32Array.of(0.3, -0.4, 7);
    const before = g.slice();
    expect(clipGradientNorm(g, trainable, 0.6)).toEqual({ norm: expect.closeTo(0.5, 6), scale: 1 });
    expect(g).toEqual(before);
    const a = Float32Array.of(1e-3, 7.77, 1);
    const b = a.slice();
    clipGradientNorm(a, trainable, 0.1);
    clipGradientNorm(b, trainable, 0.1);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });
});

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
