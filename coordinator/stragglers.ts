/**
 * How far the slowest worker lags: its step time over the median worker's. 1 means balanced; the
 * speed-proportional sharding pulls it towards 1, so a ratio that stays high names a worker that
 * keeps getting slower than its share predicts.
 */
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
