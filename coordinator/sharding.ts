/**
 * Splits a range of work items (a step's micro-batches, the test set's evaluation chunks) into
 * contiguous blocks, one per worker, in proportion to each worker's measured speed. Results do not
 * depend on this split (see training/parallel/reduction-tree.ts); only the step time does.
 */

export interface WorkerSpeed {
  id: string;
  /** Items per second (any positive scale; only the ratios matter). */
  speed: number;
  /**
   * Give it at least one item (when there are enough to go round) whatever its speed: a worker
   * that gets nothing is never measured again, so one slow warm-up step would idle it for good.
   */
  probe?: boolean;
}

export interface Block {
  workerId: string;
  first: number;
  count: number;
}

/**
 * Largest-remainder apportionment of [first, end) over the workers, in the order given. Workers
 * whose share rounds to zero get no block.
 */
export function splitRange(first: number, end: number, workers: readonly WorkerSpeed[]): Block[] {
  const items = end - first;
  if (items <= 0) return [];
  if (workers.length === 0) throw new Error('splitRange: no workers to assign work to');
  const speeds = workers.map((w) => (Number.isFinite(w.speed) && w.speed > 0 ? w.speed : 1e-9));
  const total = speeds.reduce((a, b) => a + b, 0);
  const exact = speeds.map((s) => (s / total) * items);
  const counts = exact.map(Math.floor);
  let left = items - counts.reduce((a, b) => a + b, 0);
  const byRemainder = exact
    .map((e, i) => ({ i, r: e - Math.floor(e) }))
    .sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of byRemainder) {
    if (left === 0) break;
    counts[i]++;
    left--;
  }
  if (items >= workers.length) {
    workers.forEach((w, i) => {
      if (!w.probe || counts[i] > 0) return;
      const donor = counts.indexOf(Math.max(...counts));
      counts[donor]--;
      counts[i]++;
    });
  }
  const blocks: Block[] = [];
  let at = first;
  workers.forEach((w, i) => {
    if (counts[i] > 0) blocks.push({ workerId: w.id, first: at, count: counts[i] });
    at += counts[i];
  });
  return blocks;
}

/** Exponential moving average of a worker's speed: reacts within a few steps, ignores one slow one. */
export function updateSpeed(
  previous: number | undefined,
  items: number,
  seconds: number,
  weight = 0.3,
): number {
  if (!(seconds > 0) || items <= 0) return previous ?? 1;
  const measured = items / seconds;
  return previous === undefined ? measured : (1 - weight) * previous + weight * measured;
}

/**
 * Times each worker's share of a unit of work, from its assignment to its last result: the items
 * per second that sharding follows. Not result by result: a worker's earlier nodes leave its socket
 * only between its micro-batches, so they arrive with its last one, and the gaps between results
 * measured a three-micro-batch share as 5× faster than it was, which then won it ever more of each
 * step (a 3:1 split of two equal workers that never healed).
 */
export class ShareTimer {
  private readonly shares = new Map<string, { since: number; items: number }>();

  /** Work went out to `id` (a no-op while its share is already being timed). */
  started(id: string, now: number): void {
    if (!this.shares.has(id)) this.shares.set(id, { since: now, items: 0 });
  }

  /** A result of `items`; returns the share's seconds and items once it owes nothing more. */
  result(
    id: string,
    items: number,
    owesMore: boolean,
    now: number,
  ): { items: number; seconds: number } | undefined {
    const share = this.shares.get(id);
    if (!share) return undefined;
    share.items += items;
    if (owesMore) return undefined;
    this.shares.delete(id);
    return { items: share.items, seconds: Math.max(1e-4, (now - share.since) / 1000) };
  }

  forget(id: string): void {
    this.shares.delete(id);
  }
}
