/**
 * The run directory, checked before any work: `train` and `coordinator` make it (or find it) and
 * write and remove a probe file there before the coordinator listens, so that a directory they cannot
 * write to fails in one line at once rather than at the first checkpoint, an epoch later. A directory
 * this process made is removed again at exit if the run left nothing in it worth keeping (no
 * checkpoint: it was stopped, or failed, before the first one).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { UsageError } from '../common/errors.js';
import { makeDir } from '../common/make-dir.js';
import { CHECKPOINT_FILE_PATTERN } from '../coordinator/checkpoint-store.js';
import { runPaths } from '../coordinator/run-outputs.js';

export interface RunDir {
  path: string;
  /** The top-most directory made for it here; undefined when it already existed. */
  created: string | undefined;
}

/** How long the file system may take to answer the probe before the run gives up on it. */
const PROBE_TIMEOUT_MS = 5000;

const codeOf = (err: unknown) => (err as NodeJS.ErrnoException).code ?? 'error';

const WHY: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EEXIST: 'it is a file, not a directory',
  ENOSPC: 'the disk is full',
  ENOENT: 'no directory can be made there',
};

/**
 * Makes (or finds) the run directory and proves it writable: a file is created there and removed again.
 * `flag`: how the command line named it (`--out`, `--resume`, or undefined for the default under runs/).
 */
export async function prepareRunDir(path: string, flag: string | undefined): Promise<RunDir> {
  const named = flag ? `${flag} ${path}` : `the run directory ${path}`;
  const fix =
    flag === '--resume'
      ? 'give --out DIR for the outputs'
      : 'pick a directory you can write to with --out DIR';
  const fail = (err: unknown): never => {
    const code = codeOf(err);
    throw new UsageError(
      `${named} is not a writable directory: ${WHY[code] ?? (err as Error).message} (${code}); ${fix}`,
    );
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new UsageError(
            `${named}: the file system did not answer within ${PROBE_TIMEOUT_MS / 1000} s; ${fix}`,
          ),
        ),
      PROBE_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([probe(path, fail), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function probe(path: string, fail: (err: unknown) => never): Promise<RunDir> {
  const created = await makeDir(path).catch(fail);
  const file = join(path, `.gradfleet-write-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(file, '', { flag: 'wx' });
    await unlink(file);
  } catch (err) {
    if (created) removeEmpty(path, created);
    fail(err);
  }
  return { path, created };
}

/** --resume DIR must name an earlier run (its directory, its checkpoints, or one checkpoint file). */
export async function checkResumable(path: string): Promise<'directory' | 'file'> {
  try {
    return (await stat(path)).isDirectory() ? 'directory' : 'file';
  } catch (err) {
    throw new UsageError(
      `--resume ${path} ${codeOf(err) === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as Error).message})`}: give the --out directory of an earlier run`,
    );
  }
}

/** Whether the run directory holds a checkpoint to resume from. */
export function hasCheckpoint(dir: string): boolean {
  try {
    return readdirSync(runPaths(dir).checkpoints).some((f) => CHECKPOINT_FILE_PATTERN.test(f));
  } catch {
    return false;
  }
}

/** What to type to go on from the run's newest checkpoint. */
export function resumeHint(command: string, dir: string): string {
  const quoted = /^[\w./@%+=:,-]+$/.test(dir) ? dir : `'${dir.replace(/'/g, `'\\''`)}'`;
  return `resume with \`gradfleet ${command} --resume ${quoted}\``;
}

/**
 * At exit, a run directory this process made and the run left without a checkpoint is removed, with what
 * the run wrote there before (curves.svg, an empty checkpoints/): nothing is left that cannot be resumed.
 * Anything else in it (a file put there meanwhile, a checkpoint) keeps it.
 */
export function removeIfUnused(dir: RunDir): void {
  const { created } = dir;
  if (!created) return;
  process.once('exit', () => {
    if (hasCheckpoint(dir.path)) return;
    const paths = runPaths(dir.path);
    const ours = (name: string) => name === 'curves.svg' || /^\..*\.tmp$/.test(name);
    try {
      const checkpoints = statSync(paths.checkpoints, { throwIfNoEntry: false });
      if (checkpoints?.isDirectory() && !readdirSync(paths.checkpoints).every(ours)) return;
      const names = readdirSync(dir.path).filter((n) => n !== 'checkpoints');
      if (!names.every(ours)) return;
      if (checkpoints) rmSync(paths.checkpoints, { recursive: true, force: true });
      for (const name of names) rmSync(join(dir.path, name), { force: true });
    } catch {
      return;
    }
    removeEmpty(dir.path, created);
  });
}

/** Removes `path` and its parents up to `top`, as long as each is empty. */
function removeEmpty(path: string, top: string): void {
  for (let p = path; ; p = dirname(p)) {
    try {
      rmdirSync(p);
    } catch {
      return;
    }
    if (p === top || relative(top, p).startsWith('..') || dirname(p) === p) return;
  }
}
