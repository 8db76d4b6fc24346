/**
 * How far the slowest worker lags: its step time over the median worker's. 1 means balanced; the
 * speed-proportional sharding pulls it towards 1, so a ratio that stays high names a worker that
 * keeps getting slower than its share predicts.
 */
import type { Logger } from 'pino';

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function stragglerRatio(stepSeconds: readonly number[]): number {
  if (stepSeconds.length < 2) return 1;
  const mid = median(stepSeconds);
  return mid > 0 ? Math.max(...stepSeconds) / mid : 1;
}

/**
 * Names the workers that stay slow: one whose speed (micro-batches per second) is under
 * `1 / factor` of the median's for `patience` steps in a row. Sharding already gives it fewer
 * micro-batches; this is what tells a person which machine to look at.
 */
export class StragglerWatch {
  private readonly slowSteps = new Map<string, number>();
  private readonly flagged = new Set<string>();

  constructor(
    private readonly factor = 2,
    private readonly patience = 5,
  ) {}

  /** One step's speeds; returns the workers that became stragglers and those that stopped being. */
  observe(speeds: ReadonlyMap<string, number>): { flagged: string[]; cleared: string[]; median: number } {
    const mid = median([...speeds.values()]);
    const result = { flagged: [] as string[], cleared: [] as string[], median: mid };
    for (const id of [...this.slowSteps.keys()]) {
      if (speeds.has(id)) continue;
      this.slowSteps.delete(id);
      if (this.flagged.delete(id)) result.cleared.push(id);
    }
    if (speeds.size < 2) return result;
    for (const [id, speed] of speeds) {
      const slow = speed * this.factor < mid;
      const run = slow ? (this.slowSteps.get(id) ?? 0) + 1 : 0;
      this.slowSteps.set(id, run);
      if (run >= this.patience && !this.flagged.has(id)) {
        this.flagged.add(id);
        result.flagged.push(id);
      } else if (!slow && this.flagged.delete(id)) result.cleared.push(id);
    }
    return result;
  }

  isStraggler(id: string): boolean {
    return this.flagged.has(id);
  }
}

/**
 * A StragglerWatch that says what it sees: each straggler named in the log and to `straggler` (metrics), once
 * when it becomes one and once when it stops being one.
 */
export class StragglerReport {
  private readonly watch = new StragglerWatch();

  constructor(
    private readonly who: 'worker' | 'shard reducer',
    private readonly unit: string,
    private readonly log: Logger,
    private readonly straggler?: (id: string, flagged: boolean) => void,
  ) {}

  observe(speeds: ReadonlyMap<string, number>): void {
    const { flagged, cleared, median } = this.watch.observe(speeds);
    const key = this.who === 'worker' ? 'worker' : 'shard';
    const consequence = this.who === 'worker' ? 'it gets a smaller share' : 'every step waits for it';
    for (const id of flagged) {
      this.log.warn(
        { [key]: id, speed: speeds.get(id), median_speed: median },
        `${this.who} ${id} is a straggler: ${speeds.get(id)!.toFixed(1)} ${this.unit} against a median of ${median.toFixed(1)}; ${consequence}`,
      );
      this.straggler?.(id, true);
    }
    for (const id of cleared) {
      this.log.info({ [key]: id }, `${this.who} ${id} is no longer a straggler`);
      this.straggler?.(id, false);
    }
  }
}
