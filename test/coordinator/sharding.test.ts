import { describe, expect, it } from 'vitest';
import { splitRange, updateSpeed } from '../../coordinator/sharding.js';
import { WorkTracker } from '../../coordinator/work-tracker.js';

describe('splitRange', () => {
  it('hands out contiguous blocks covering the range, in proportion to speed', () => {
    const blocks = splitRange(0, 10, [{ id: 'a', speed: 1 }, { id: 'b', speed: 3 }]);
    expect(blocks).toEqual([{ workerId: 'a', first: 0, count: 3 }, { workerId: 'b', first: 3, count: 7 }]);
    const even = splitRange(4, 8, [{ id: 'a', speed: 2 }, { id: 'b', speed: 2 }, { id: 'c', speed: 2 }]);
    expect(even.reduce((n, b) => n + b.count, 0)).toBe(4);
    expect(even.map((b) => b.first)).toEqual([4, 6, 7]);
  });

  it('gives nothing to a worker whose share rounds to zero, and refuses an empty pool', () => {
    expect(splitRange(0, 2, [{ id: 'slow', speed: 0.01 }, { id: 'fast', speed: 10 }])).toEqual([{ workerId: 'fast', first: 0, count: 2 }]);
    expect(() => splitRange(0, 2, [])).toThrow(/no workers/);
    expect(splitRange(3, 3, [{ id: 'a', speed: 1 }])).toEqual([]);
  });

  it('smooths speed measurements', () => {
    expect(updateSpeed(undefined, 4, 2)).toBe(2);
    expect(updateSpeed(2, 4, 1)).toBeCloseTo(2 * 0.7 + 4 * 0.3);
    expect(updateSpeed(2, 4, 0)).toBe(2);
  });
});

describe('WorkTracker', () => {
  it('accepts each owed range once and counts what remains', () => {
    const t = new WorkTracker(8);
    t.expect('a', { first: 0, end: 4 });
    t.expect('b', { first: 4, end: 8 });
    expect(t.settle('a', { first: 0, end: 2 })).toBe(true);
    expect(t.settle('a', { first: 0, end: 2 })).toBe(false); // duplicate
    expect(t.settle('b', { first: 2, end: 4 })).toBe(false); // not b's
    expect(t.remaining).toBe(6);
    expect(t.revoke('a', { first: 2, end: 3 })).toEqual([{ first: 2, end: 3 }]);
    expect(t.release('a')).toEqual([{ first: 3, end: 4 }]);
    expect(t.owesAnything('a')).toBe(false);
    expect(t.settle('b', { first: 4, end: 8 })).toBe(true);
    expect(t.remaining).toBe(2);
  });
});
