/**
 * One structured logger for every process. Logs go to stderr so that stdout stays free for
 * results (`--json` prints its object as the last stdout line) and progress bars.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.GRADFLEET_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}

/** For libraries and tests that take an optional logger. */
export const silentLogger: Logger = pino({ level: 'silent' });
