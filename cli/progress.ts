/**
 * Progress for long work: on a terminal, a bar on the last line of stderr (log lines scroll above
 * it); elsewhere, a structured log line at most every few seconds. Rate and ETA come from the last
 * 30 s, not from the start.
 */
import type { Logger } from '../common/logger.js';
import { logFormat } from '../common/logger.js';
import { stderrStatus } from '../common/status-line.js';
import { RateWindow, formatDuration } from './rate-window.js';

export interface Progress {
  update(done: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

const BAR_WIDTH = 24;

export function renderBar(
  label: string,
  done: number,
  total: number,
  unit: string,
  rate: number,
  eta: number | null,
  info: string,
): string {
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
  return `${label} |${bar}| ${done}/${total} ${unit} | ${rate.toFixed(0)} ${unit}/s${info ? ` | ${info}` : ''} | ETA ${formatDuration(eta)}`;
}

const describe = (fields: Record<string, string | number>) =>
  Object.entries(fields)
    .map(([k, v]) => `${k} ${v}`)
    .join(' ');

export interface ProgressStart {
  now?: () => number;
  /**
   * Done before this process began (a resumed run's steps): the rate counts only what is done from here
   * on.
   */
  from?: number;
  /** The work that opened the bar began this long ago (its first update comes at that work's end). */
  sinceMs?: number;
}

export function createProgress(
  log: Logger,
  label: string,
  total: number,
  unit: string,
  { now = Date.now, from = 0, sinceMs = 0 }: ProgressStart = {},
): Progress {
  const window = new RateWindow();
  window.observe(now() - sinceMs, from);
  if (process.stderr.isTTY && logFormat() === 'pretty') {
    stderrStatus.show(renderBar(label, from, total, unit, 0, null, ''));
    return {
      update(done, fields = {}) {
        window.observe(now(), done);
        const { rate, etaSeconds } = window.estimate(total);
        stderrStatus.show(renderBar(label, done, total, unit, rate, etaSeconds, describe(fields)));
        // A full bar stays on screen as it is; what is logged next (the evaluation) goes below it.
        if (done >= total) stderrStatus.keep();
      },
      stop: () => stderrStatus.keep(),
    };
  }
  let lastLog = 0;
  return {
    update(done, fields = {}) {
      const t = now();
      window.observe(t, done);
      if (t - lastLog < 5000 && done < total) return;
      lastLog = t;
      const { rate, etaSeconds } = window.estimate(total);
      log.info(
        {
          label,
          done,
          total,
          unit,
          rate: Math.round(rate),
          eta_s: etaSeconds === null ? null : Math.round(etaSeconds),
          ...fields,
        },
        `${label} ${done}/${total} ${unit}`,
      );
    },
    stop() {},
  };
}
