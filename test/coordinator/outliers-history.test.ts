/**
 * The outlier check at two workers (issue 31 item 3): the median of two norms is their mean, which a factor of 2
 * or more never exceeds, so with fewer than three nodes a step is compared with the run's recent accepted
 * norms as well. With three nodes or more the step's own median decides, as before.
 */
import { describe, expect, it } from 'vitest';
import { NormHistory, flagOutliers } from '../../coordinator/outliers.js';

const node = (index: number, meanNorm: number) => ({
  key: `0:${index}`,
  node: { level: 0, index },
  workerId: `w${index}`,
  meanNorm,
});

/** Honest mean-gradient norms of earlier steps: around 1, a little spread. */
const honest = Array.from({ length: 40 }, (_, i) => 0.8 + 0.4 * ((i * 7) % 11) * 0.1);

describe('flagOutliers with two nodes', () => {
  it.each([
    [1, 1.1],
    [1, 50],
    [0.001, 1e9],
    [0, 1e9],
    [1e9, 0],
  ])('flags nothing without history at factor >= 2 (norms %s and %s)', (x, y) => {
    for (const factor of [2, 2.5, 5]) {
      const { flagged, median } = flagOutliers([node(0, x), node(1, y)], factor);
      expect(flagged).toEqual([]);
      expect(median).toBe((x + y) / 2);
    }
    // The same with an empty history given.
    expect(flagOutliers([node(0, x), node(1, y)], 2, []).flagged).toEqual([]);
  });

  it('with a history of honest norms, flags a node ×50 and not the honest one beside it', () => {
    const { flagged, median } = flagOutliers([node(0, 1), node(1, 50)], 2, honest);
    expect(flagged.map((n) => n.workerId)).toEqual(['w1']);
    expect(median).toBeGreaterThan(0.8);
    expect(median).toBeLessThan(1.3);
  });

  it('with a history, flags a node ×3 at factor 2, either order, and nothing in an honest step', () => {
    expect(flagOutliers([node(0, 3), node(1, 1)], 2, honest).flagged.map((n) => n.workerId)).toEqual(['w0']);
    expect(flagOutliers([node(0, 1), node(1, 3)], 2, honest).flagged.map((n) => n.workerId)).toEqual(['w1']);
    expect(flagOutliers([node(0, 1.1), node(1, 0.9)], 2, honest).flagged).toEqual([]);
  });

  it('flags both when both are far above the history', () => {
    const { flagged } = flagOutliers([node(0, 40), node(1, 50)], 2, honest);
    expect(flagged.map((n) => n.workerId)).toEqual(['w0', 'w1']);
  });

  it('compares a single node with the history, and flags nothing with neither', () => {
    expect(flagOutliers([node(0, 50)], 2, honest).flagged.map((n) => n.workerId)).toEqual(['w0']);
    expect(flagOutliers([node(0, 1)], 2, honest).flagged).toEqual([]);
    expect(flagOutliers([node(0, 1e9)], 2).flagged).toEqual([]);
    // One norm of history beside one node is the two-norm case again: their mean.
    expect(flagOutliers([node(0, 1e9)], 2, [1]).flagged).toEqual([]);
    expect(flagOutliers([node(0, 1e9)], 2, [1, 1]).flagged.map((n) => n.workerId)).toEqual(['w0']);
  });

  it('flags nothing in an empty step', () => {
    expect(flagOutliers([], 2, honest).flagged).toEqual([]);
    expect(flagOutliers([], 2).flagged).toEqual([]);
  });
});

describe('flagOutliers with three nodes or more', () => {
  it('ignores the history: the step is judged by its own median', () => {
    const step = [node(0, 1), node(1, 1.2), node(2, 0.9)];
    // A history of tiny norms would flag all three; one of huge norms would hide a poisoned node.
    const tiny = Array.from({ length: 50 }, () => 0.01);
    const huge = Array.from({ length: 50 }, () => 1000);
    expect(flagOutliers(step, 3, tiny)).toEqual(flagOutliers(step, 3));
    expect(flagOutliers(step, 3, tiny).flagged).toEqual([]);
    expect(flagOutliers(step, 3, tiny).median).toBe(1);
    const poisoned = [...step, node(3, 50)];
    expect(flagOutliers(poisoned, 3, huge).flagged.map((n) => n.workerId)).toEqual(['w3']);
    expect(flagOutliers(poisoned, 3, huge).median).toBeCloseTo(1.1, 12);
  });
});

describe('NormHistory', () => {
  it('keeps only the last `size` norms, oldest first', () => {
    const h = new NormHistory(3);
    expect(h.values).toEqual([]);
    h.add([1, 2]);
    expect(h.values).toEqual([1, 2]);
    h.add([3, 4, 5]);
    expect(h.values).toEqual([3, 4, 5]);
    h.add([6]);
    expect(h.values).toEqual([4, 5, 6]);
    h.add([]);
    expect(h.values).toEqual([4, 5, 6]);
    h.add([7, 8, 9, 10, 11]);
    expect(h.values).toEqual([9, 10, 11]);
  });

  it('keeps 64 by default', () => {
    const h = new NormHistory();
    for (let i = 0; i < 100; i++) h.add([i]);
    expect(h.values).toHaveLength(64);
    expect(h.values[0]).toBe(36);
    expect(h.values[63]).toBe(99);
  });

  it('feeds flagOutliers: a run of honest steps then a ×50 node at two workers', () => {
    const h = new NormHistory(16);
    for (let step = 0; step < 20; step++) {
      const norms = [node(0, 1 + step / 100), node(1, 0.95 + step / 100)];
      const { flagged } = flagOutliers(norms, 2, h.values);
      expect(flagged).toEqual([]);
      h.add(norms.map((n) => n.meanNorm));
    }
    expect(h.values).toHaveLength(16);
    const { flagged } = flagOutliers([node(0, 1.2), node(1, 60)], 2, h.values);
    expect(flagged.map((n) => n.workerId)).toEqual(['w1']);
  });
});
