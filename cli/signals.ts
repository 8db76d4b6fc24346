/**
 * Ctrl-C (or SIGTERM): the first asks the coordinator to stop after the step in flight and checkpoint; the
 * second exits now. A run that has not stopped `graceMs` after the first (a step that can never finish)
 * exits anyway: nothing holds a stopped run for longer.
 */
import type { Logger } from '../common/logger.js';
import type { Link } from '../protocol/transport.js';
import { hasCheckpoint, resumeHint } from './out-dir.js';

/** How long a run may take to stop after the first Ctrl-C or SIGTERM. */
const STOP_GRACE_MS = 10_000;

export interface StopOptions {
  graceMs?: number;
  /** At the first signal, as the stop is requested: no local process is to be started or restarted now. */
  onStopRequested?: () => void;
  /** Just before a forced exit (the second signal, or the grace over): end the local processes at once. */
  beforeForcedExit?: () => void;
  /** For the hint a forced exit ends with, where the run has a checkpoint: `gradfleet COMMAND --resume DIR`. */
  resume?: { command: string; dir: string };
}

export function stopOnSigint(target: { requestStop(): void }, log: Logger, options: StopOptions = {}): void {
  const graceMs = options.graceMs ?? STOP_GRACE_MS;
  let asked = false;
  const quit = (code: number, why: string) => {
    options.beforeForcedExit?.();
    const { resume } = options;
    const hint =
      resume && hasCheckpoint(resume.dir)
        ? `; ${resumeHint(resume.command, resume.dir)} (from its newest checkpoint)`
        : '';
    log.error(`${why}${hint}`);
    process.exit(code);
  };
  const handler = (signal: NodeJS.Signals) => {
    const code = signal === 'SIGTERM' ? 143 : 130;
    if (asked) return quit(code, 'interrupted again: quitting now, without finishing the step');
    asked = true;
    log.warn(
      `interrupted: finishing the current step and writing a checkpoint (Ctrl-C again to quit now; quitting anyway in ${graceMs / 1000} s)`,
    );
    options.onStopRequested?.();
    target.requestStop();
    setTimeout(
      () =>
        quit(
          code,
          `the run did not stop within ${graceMs / 1000} s of the interrupt: quitting without finishing the step`,
        ),
      graceMs,
    ).unref();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/**
 * SIGINT/SIGTERM for a process that joins another (`worker`, `shard`): close the session's link, so
 * the session ends as the peer sees a clean leave, and tell the retry loops to stop.
 */
export class LinkStopper {
  stopping = false;
  private link: Link | undefined;

  constructor(role: string) {
    const stop = (why: string) => {
      this.stopping = true;
      this.link?.close(why);
    };
    process.once('SIGINT', () => stop(`${role} interrupted`));
    process.once('SIGTERM', () => stop(`${role} terminated`));
  }

  /** The session's link from now on (the one a signal closes). */
  hold<T extends Link | undefined>(link: T): T {
    this.link = link;
    return link;
  }
}
