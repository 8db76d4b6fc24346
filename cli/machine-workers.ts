/**
 * The gradfleet workers running on this machine: each `gradfleet worker` leaves a file named for its pid
 * in a folder of the temp directory while it runs (removed at exit; a file whose process is gone is
 * stale and removed by the next worker that looks). A native worker started without --threads takes
 * every core, so a second one on the same machine makes both slower than one: it says so, with the flag
 * that fixes it. Best effort: a temp directory that cannot be written just means no warning.
 */
import { mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

/** One folder per user of the machine (another user's files could not be removed when stale). */
function registryDir(): string {
  let user = 'user';
  try {
    const { uid, username } = userInfo();
    user = uid >= 0 ? String(uid) : username;
  } catch {
    // No user database (a bare container): one folder for all.
  }
  return join(tmpdir(), `gradfleet-workers-${user}`);
}

/** A live process that is a gradfleet worker (where /proc tells; elsewhere any live process). */
function isLiveWorker(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // The pid of a worker that died may have been reused by another program.
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('worker');
  } catch {
    return true;
  }
}

/**
 * Registers this process as a worker of the machine until it exits; returns the pids of the other workers
 * running here now.
 */
export function registerWorker(dir = registryDir()): number[] {
  const others: number[] = [];
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) {
      const pid = Number(/^(\d+)\.pid$/.exec(name)?.[1]);
      if (!pid || pid === process.pid) continue;
      if (isLiveWorker(pid)) others.push(pid);
      else unlinkSync(join(dir, name));
    }
    const own = join(dir, `${process.pid}.pid`);
    writeFileSync(own, `${process.pid}\n`);
    process.once('exit', () => {
      try {
        unlinkSync(own);
      } catch {
        // Gone already: nothing to tidy.
      }
    });
  } catch {
    // No temp directory to share: no census, and no warning.
  }
  return others;
}

/**
 * The warning for a native worker that takes every core (no --threads) while `others` (pids) run here;
 * undefined when there is nothing to say.
 */
export function sharedCoresWarning(others: readonly number[], cores: number): string | undefined {
  if (others.length === 0) return undefined;
  const workers = others.length + 1;
  const share = Math.max(1, Math.floor(cores / workers));
  return (
    `${others.length === 1 ? 'another gradfleet worker runs' : `${others.length} other gradfleet workers run`} on this machine (pid ${others.join(', ')}), ` +
    `and this one takes all ${cores} cores: they slow each other down. Give each worker here --threads ${share} (${cores} cores ÷ ${workers} workers)`
  );
}
