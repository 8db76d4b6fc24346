/**
 * Progress for long work: a bar with rate and ETA on a TTY (stderr, so stdout stays for results),
 * structured log lines at most every few seconds otherwise.
 */
import cliProgress from 'cli-progress';
import type { Logger } from '../common/logger.js';

export interface Progress {
  update(done: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

export function createProgress(log: Logger, label: string, total: number, unit: string): Progress {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar({
      stream: process.stderr,
      format: `${label} |{bar}| {value}/{total} ${unit} | {rate} ${unit}/s | {info} | ETA {eta_formatted}`,
      hideCursor: true,
    }, cliProgress.Presets.shades_classic);
    const started = Date.now();
    bar.start(total, 0, { rate: '0', info: '' });
    return {
      update: (done, fields = {}) => bar.update(done, {
        rate: (done / Math.max(1e-3, (Date.now() - started) / 1000)).toFixed(0),
        info: Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' '),
      }),
      stop: () => bar.stop(),
    };
  }
  let lastLog = 0;
  const started = Date.now();
  return {
    update(done, fields = {}) {
      const now = Date.now();
      if (now - lastLog < 5000 && done < total) return;
      lastLog = now;
      const rate = done / Math.max(1e-3, (now - started) / 1000);
      log.info({ label, done, total, unit, rate: Math.round(rate), eta_s: Math.round((total - done) / Math.max(rate, 1e-9)), ...fields }, `${label} ${done}/${total} ${unit}`);
    },
    stop() {},
  };
}
