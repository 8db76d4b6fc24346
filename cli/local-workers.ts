/**
 * Worker processes on this machine for `gradfleet train`: one `gradfleet worker` child per slot,
 * in its own process group so that Ctrl-C reaches only the coordinator, which then stops them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../common/logger.js';

const mainScript = fileURLToPath(new URL('./main.js', import.meta.url));

export interface LocalWorkers {
  children: ChildProcess[];
  /** Resolves when every child has exited. */
  allExited: Promise<void>;
  kill(): void;
}

export interface LocalWorkerOptions {
  count: number;
  log: Logger;
  /** Flags for worker i (from 0): its compute, how to join, its metrics port. */
  argsFor: (i: number) => string[];
  /** Extra environment (secrets that must not show in `ps`). */
  env?: Record<string, string>;
}

export function spawnLocalWorkers({ count, log, argsFor, env = {} }: LocalWorkerOptions): LocalWorkers {
  const children = Array.from({ length: count }, (_, i) => {
    const child = spawn(process.execPath, [mainScript, 'worker', '--id', `local-${i + 1}`, ...argsFor(i)], {
      stdio: ['ignore', 'ignore', 'inherit'],
      detached: true,
      env: { ...process.env, ...env, GRADFLEET_LOG_LEVEL: process.env.GRADFLEET_WORKER_LOG_LEVEL ?? 'warn' },
    });
    child.on('exit', (code, signal) => {
      if (code !== 0) log.warn({ worker: `local-${i + 1}`, code, signal }, `local worker ${i + 1} exited (${signal ?? `code ${code}`})`);
    });
    return child;
  });
  const allExited = Promise.all(children.map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) resolve();
    else c.once('exit', () => resolve());
  }))).then(() => undefined);
  const kill = () => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGTERM'));
  process.once('exit', kill);
  return { children, allExited, kill };
}
