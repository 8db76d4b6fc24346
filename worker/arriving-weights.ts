/**
 * One weights version as a compute sees it arrive: the buffer the parts land in (shared with the thread that
 * receives them), which ranges are in, and a wait for any range, so that a runner that computes layer by
 * layer starts each layer once its own weights are in rather than once all are.
 */
export class ArrivingWeights {
  private readonly ranges: [number, number][] = [];
  private held = 0;
  private waiters: { from: number; to: number; resolve: () => void }[] = [];

  constructor(
    readonly version: number,
    readonly values: Float32Array,
  ) {}

  /** Whole weights, in at once. */
  static whole(version: number, values: Float32Array): ArrivingWeights {
    const w = new ArrivingWeights(version, values);
    w.arrived(0, values.length);
    return w;
  }

  get complete(): boolean {
    return this.held === this.values.length;
  }

  /** Values [from, to) are in the buffer now (a part sent again, rewritten in place, counts once). */
  arrived(from: number, to: number): void {
    if (this.ranges.some(([a, b]) => a === from && b === to)) return;
    this.ranges.push([from, to]);
    this.held += to - from;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) {
      if (this.holds(w.from, w.to)) w.resolve();
      else this.waiters.push(w);
    }
  }

  /** Resolves once values [from, to) are in. */
  whenIn(from: number, to: number): Promise<void> {
    if (this.holds(from, to)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ from, to, resolve }));
  }

  private holds(from: number, to: number): boolean {
    if (from >= to) return true;
    let covered = 0;
    for (const [a, b] of this.ranges) covered += Math.max(0, Math.min(b, to) - Math.max(a, from));
    return covered >= to - from;
  }
}
