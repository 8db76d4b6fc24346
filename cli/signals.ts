/**
 * Ctrl-C: the first asks the coordinator to stop after the step in flight and checkpoint; the second exits
 * now.
 */
import type { Logger } from '../common/logger.js';
import type { Link } from '../protocol/transport.js';

export function stopOnSigint(target: { requestStop(): void }, log: Logger): void {
  let asked = false;
  const handler = () => {
    if (asked) process.exit(130);
    asked = true;
    log.warn('interrupted: finishing the current step and writing a checkpoint (Ctrl-C again to quit now)');
    target.requestStop();
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
