/**
 * The few system commands a simulated cluster needs (ip, tc), run without a shell, failing with what they
 * said.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export class SimNetError extends Error {
  override name = 'SimNetError';
}

const describe = (file: string, args: readonly string[]) => [file, ...args].join(' ');

/** Runs `file args`; resolves with its stdout, or rejects naming the command and its stderr. */
export async function command(file: string, args: readonly string[]): Promise<string> {
  try {
    return (await execFileAsync(file, args, { encoding: 'utf8' })).stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const why =
      e.code === 'ENOENT'
        ? `${file} is not installed (Debian: apt-get install iproute2)`
        : e.stderr?.trim() || e.message;
    throw new SimNetError(`${describe(file, args)}: ${why}`);
  }
}

/** The same, synchronously: for the process's 'exit' event, where nothing asynchronous runs any more. */
export function commandSync(file: string, args: readonly string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Creating namespaces and links needs root; say so before trying. */
export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new SimNetError(
      `${what} needs root: it creates network namespaces, links and traffic shapers (run it with sudo)`,
    );
  }
}
