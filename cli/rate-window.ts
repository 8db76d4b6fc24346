/**
 * Throughput over a recent window, for rates and ETAs that follow the run as it is now: a mean
 * since the start lags for minutes after a slow warm-up, and an ETA from it stays stuck.
 */
export interface RateEstimate {
  /** Units per second over the window (0 until two observations are far enough apart). */
  rate: number;
  /** Seconds to `total` at that rate; null while the rate is unknown. */
  etaSeconds: number | null;
}

export class RateWindow {
  private readonly points: { t: number; done: number }[] = [];

  /** `windowMs`: how far back the rate looks; `minSpanMs`: the shortest span worth a rate. */
  constructor(
    private readonly windowMs = 30_000,
    private readonly minSpanMs = 200,
  ) {}

  observe(tMs: number, done: number): void {
    this.points.push({ t: tMs, done });
    // Keep one point at or before the window's start, so the span covers the whole window.
    while (this.points.length > 2 && this.points[1].t <= tMs - this.windowMs) this.points.shift();
  }

  estimate(total?: number): RateEstimate {
    const first = this.points[0];
    const last = this.points.at(-1);
    if (!first || !last || last.t - first.t < this.minSpanMs) return { rate: 0, etaSeconds: null };
    const rate = (last.done - first.done) / ((last.t - first.t) / 1000);
    const left = total === undefined ? null : Math.max(0, total - last.done);
    return { rate, etaSeconds: left === null || rate <= 0 ? null : left / rate };
  }
}

/** 383 s → "6m23s", 4000 s → "1h06m", 9 s → "9s"; unknown → "…". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '…';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
