/**
 * One structured logger for every process. Logs go to stderr so that stdout stays free for
 * results (`--json` prints its object as the last stdout line). On a terminal they are one
 * readable line each, written above the progress bar; elsewhere, and with `--json`, they are JSON
 * lines for machines, as pino writes them.
 */
import { pino, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import { colourEnabled } from './colour.js';
import { stderrStatus } from './status-line.js';

export type { Logger };

export type LogFormat = 'json' | 'pretty';

let format: LogFormat | undefined;
let prettify: ((line: string) => string) | undefined;

/** The format every logger of this process uses; `--json` asks for JSON lines even on a terminal. */
export function configureLogFormat(opts: { json?: boolean }): void {
  format = opts.json || !process.stderr.isTTY ? 'json' : 'pretty';
}

export function logFormat(): LogFormat {
  format ??= process.stderr.isTTY ? 'pretty' : 'json';
  return format;
}

/** Time, level, role and message: the messages say what their fields say (the fields are for machines). */
function pretty(line: string): string {
  prettify ??= prettyFactory({
    colorize: colourEnabled(process.stderr),
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname',
    hideObject: true,
  });
  return prettify(line);
}

/**
 * Writes one log line as this process writes its own: a pino JSON line (a local worker's,
 * relayed) is made readable on a terminal; any other text (a crash's stack trace) passes as it is.
 */
export function writeLogLine(line: string): void {
  if (logFormat() === 'pretty' && line.startsWith('{')) stderrStatus.log(pretty(line));
  else stderrStatus.log(line);
}

/** pino writes each line synchronously through this: logs never lag behind or get lost at exit. */
const destination = {
  write: (chunk: string) => writeLogLine(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk),
};

export function createLogger(name: string, level = process.env.GRADFLEET_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, destination);
}

/** For libraries and tests that take an optional logger. */
export const silentLogger: Logger = pino({ level: 'silent' });
