import { describe, expect, it } from 'vitest';
import { ShareTimer, splitRange, updateSpeed } from '../../coordinator/sharding.js';
import { WorkTracker } from '../../coordinator/work-tracker.js';

describe('splitRange', () => {
  it('hands out contiguous blocks covering the range, in proportion to speed', () => {
    const blocks = splitRange(0, 10, [
      { id: 'a', speed: 1 },
      { id: 'b', speed: 3 },
    ]);
    expect(blocks).toEqual([
      { workerId: 'a', first: 0, count: 3 },
      { workerId: 'b', first: 3, count: 7 },
    ]);
    const even = splitRange(4, 8, [
      { id: 'a', speed: 2 },
      { id: 'b', speed: 2 },
      { id: 'c', speed: 2 },
    ]);
    expect(even.reduce((n, b) => n + b.count, 0)).toBe(4);
    expect(even.map((b) => b.first)).toEqual([4, 6, 7]);
  });

  it('gives nothing to a worker whose share rounds to zero, and refuses an empty pool', () => {
    expect(
      splitRange(0, 2, [
        { id: 'slow', speed: 0.01 },
        { id: 'fast', speed: 10 },
      ]),
    ).toEqual([{ workerId: 'fast', first: 0, count: 2 }]);
    expect(() => splitRange(0, 2, [])).toThrow(/no workers/);
    expect(splitRange(3, 3, [{ id: 'a', speed: 1 }])).toEqual([]);
  });

  it('smooths speed measurements', () => {
    expect(updateSpeed(undefined, 4, 2)).toBe(2);
    expect(updateSpeed(2, 4, 1)).toBeCloseTo(2 * 0.7 + 4 * 0.3);
    expect(updateSpeed(2, 4, 0)).toBe(2);
  });
});

describe('ShareTimer', () => {
  it('times a share from its assignment to its last result, whatever the gaps between results', () => {
    const t = new ShareTimer();
    t.started('a', 1000);
    t.started('a', 1050); // more work while the share is timed: still from 1000
    expect(t.result('a', 1, true, 1300)).toBeUndefined();
    expect(t.result('a', 2, false, 1301)).toEqual({ items: 3, seconds: 0.301 });
    expect(t.result('a', 1, false, 1400)).toBeUndefined(); // no share open
    t.started('b', 0);
    t.forget('b');
    expect(t.result('b', 1, false, 10)).toBeUndefined();
  });

  it('brings two equal workers back to an even split after one slow step, though earlier nodes arrive with the last', () => {
    // Two equal workers, 4 micro-batches a step, 70 ms each plus 40 ms to deliver a share; a
    // worker's earlier nodes arrive together with its last. Start from the split one slow step left.
    const speeds = new Map([
      ['a', 30],
      ['b', 8],
    ]);
    const splits: number[][] = [];
    for (let step = 0; step < 10; step++) {
      const blocks = splitRange(
        0,
        4,
        [...speeds].map(([id, speed]) => ({ id, speed })),
      );
      splits.push(blocks.map((b) => b.count));
      const timer = new ShareTimer();
      for (const b of blocks) {
        timer.started(b.workerId, 0);
        const done = 70 * b.count + 40;
        for (let node = b.count; node > 1; node--) timer.result(b.workerId, 1, true, done);
        const share = timer.result(b.workerId, 1, false, done)!;
        speeds.set(b.workerId, updateSpeed(speeds.get(b.workerId), share.items, share.seconds));
      }
    }
    expect(splits[0]).toEqual([3, 1]);
    expect(splits.at(-1)).toEqual([2, 2]);
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
