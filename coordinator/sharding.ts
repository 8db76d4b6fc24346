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
  const byRemainder = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
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
export function updateSpeed(previous: number | undefined, items: number, seconds: number, weight = 0.3): number {
  if (!(seconds > 0) || items <= 0) return previous ?? 1;
  const measured = items / seconds;
  return previous === undefined ? measured : (1 - weight) * previous + weight * measured;
}
