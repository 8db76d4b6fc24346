/** Ctrl-C: the first asks the coordinator to stop after the step in flight and checkpoint; the second exits now. */
import type { Logger } from '../common/logger.js';

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
