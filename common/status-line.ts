/**
 * The last line of a terminal kept for a live status (a progress bar), with log lines written above
 * it. Every write is synchronous: a line logged just before the process exits is never lost, and no
 * timer keeps the process alive. (cli-progress buffers log lines until its next redraw timer and
 * installs its own SIGINT handler, which is how a Ctrl-C once left `ETA 5m30s^C{"level":40,…` on
 * one line.) Off a terminal there is no status line and log lines pass straight through.
 */
import { writeSync } from 'node:fs';

const CLEAR_LINE = '\r\x1b[2K';

export class StatusLine {
  private status: string | null = null;

  constructor(
    private readonly fd: number,
    private readonly isTTY: boolean,
    private readonly columns: () => number,
  ) {}

  /** Writes one or more complete lines above the status (a trailing newline is added if missing). */
  log(text: string): void {
    const lines = text.endsWith('\n') ? text : `${text}\n`;
    if (!this.isTTY || this.status === null) return this.write(lines);
    // Clearing first also wipes whatever the terminal echoed onto the status line (a `^C`).
    this.write(`${CLEAR_LINE}${lines}${this.fit(this.status)}`);
  }

  /** Shows `text` as the status line (redrawn in place), or removes it with null. */
  show(text: string | null): void {
    if (!this.isTTY) return;
    if (text === null) {
      if (this.status !== null) this.write(CLEAR_LINE);
    } else {
      this.write(`${CLEAR_LINE}${this.fit(text)}`);
    }
    this.status = text;
  }

  /** Turns the status into an ordinary line of output (the finished bar stays on screen). */
  keep(): void {
    if (this.isTTY && this.status !== null) this.write(`${CLEAR_LINE}${this.fit(this.status)}\n`);
    this.status = null;
  }

  /** A status wider than the terminal would wrap, and then the next redraw could not clear it. */
  private fit(text: string): string {
    const width = Math.max(20, this.columns() - 1);
    return text.length > width ? `${text.slice(0, width - 1)}…` : text;
  }

  private write(s: string): void {
    try {
      writeSync(this.fd, s);
    } catch {
      // A closed or full terminal must not take the process down with it.
    }
  }
}

/** The status line of this process's stderr, where logs and progress go (stdout is for results). */
export const stderrStatus = new StatusLine(
  2,
  process.stderr.isTTY === true,
  () => process.stderr.columns ?? 80,
);
// A bar still showing when the process ends stays as a line of its own, so the shell prompt starts on the
// next one.
process.once('exit', () => stderrStatus.keep());
