/**
 * One weights version as a compute sees it arrive: the buffer the parts land in (shared with the thread that
 * receives them), which ranges are in, and a wait for any range, so that a runner that computes layer by
 * layer starts each layer once its own weights are in rather than once all are.
 */
import { RangeSet } from '../common/range-set.js';

export class ArrivingWeights {
  private readonly ranges = new RangeSet();
  private waiters: { from: number; to: number; resolve: () => void }[] = [];

  constructor(
    readonly version: number,
    readonly values: Float32Array,
  ) {}

  get complete(): boolean {
    return this.ranges.held === this.values.length;
  }

  /** Values [from, to) are in the buffer now (a part sent again, rewritten in place, counts once). */
  arrived(from: number, to: number): void {
    if (this.ranges.has(from, to)) return;
    this.ranges.add(from, to);
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) {
      if (this.ranges.covers(w.from, w.to)) w.resolve();
      else this.waiters.push(w);
    }
  }

  /** Resolves once values [from, to) are in. */
  whenIn(from: number, to: number): Promise<void> {
    if (this.ranges.covers(from, to)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ from, to, resolve }));
  }
}
