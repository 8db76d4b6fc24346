/**
 * [from, to) ranges of a flat vector taken one at a time (a node's buckets, a weights version's parts): which
 * are held, how many values, and whether a range overlaps, matches or is covered by those held.
 */
export class RangeSet {
  private readonly ranges: [number, number][] = [];
  /** Values held, counting each range added once. */
  held = 0;

  get count(): number {
    return this.ranges.length;
  }

  /** The ranges, in the order they were added. */
  get list(): readonly (readonly [number, number])[] {
    return this.ranges;
  }

  add(from: number, to: number): void {
    this.ranges.push([from, to]);
    this.held += to - from;
  }

  /** True when [from, to) shares a value with a range held. */
  overlaps(from: number, to: number): boolean {
    return this.ranges.some(([a, b]) => from < b && a < to);
  }

  /** True when [from, to) is exactly a range held. */
  has(from: number, to: number): boolean {
    return this.ranges.some(([a, b]) => a === from && b === to);
  }

  /** True when every value of [from, to) is in a range held (the ranges held being disjoint). */
  covers(from: number, to: number): boolean {
    if (from >= to) return true;
    let covered = 0;
    for (const [a, b] of this.ranges) covered += Math.max(0, Math.min(b, to) - Math.max(a, from));
    return covered >= to - from;
  }
}
