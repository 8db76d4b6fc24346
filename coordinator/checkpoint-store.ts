/**
 * A directory of checkpoints, one file per saved step: `ckpt-<step zero-padded to 9>.gfck`.
 *
 * Saving is crash-safe: the bytes go to a temp file in the same directory (`.ckpt-….tmp`, which
 * listCheckpoints never reports), the temp file is fsynced, renamed over the final name, and the
 * directory is fsynced so the rename itself survives a power cut. Only then are old checkpoints
 * pruned. A reader therefore sees either the previous set of checkpoints or the new one, never a
 * half-written file under a checkpoint name; and if one is damaged anyway (disk, copy, hand edit),
 * loadLatestCheckpoint falls back to the newest one that still decodes and says what it skipped.
 *
 * With a key (the run has a secret), files are signed on save and their signatures checked on load
 * (checkpoint-file.ts); the run passes its key to every save and load. A file signed with another key, or altered after signing, is refused outright: a directory load
 * does not fall back past it to an older one, since a forgery is not damage.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from '../common/logger.js';
import { makeDir } from '../common/make-dir.js';
import {
  CheckpointError,
  type CheckpointKey,
  type CheckpointSignature,
  decodeCheckpoint,
  encodeCheckpoint,
} from './checkpoint-file.js';

/** `ckpt-000000042.gfck`; steps past 999,999,999 simply get more digits. */
export const CHECKPOINT_FILE_PATTERN = /^ckpt-(\d{9,})\.gfck$/;

export interface CheckpointEntry {
  step: number;
  path: string;
}

export interface LoadedCheckpoint {
  path: string;
  /** The step from the file name, or null when the file is not named `ckpt-<step>.gfck`. */
  step: number | null;
  meta: unknown;
  tensors: Record<string, Float32Array>;
  /** Who vouches for it: unsigned, verified with the key given, or signed and not checked (no key). */
  signature: CheckpointSignature;
}

interface SkippedCheckpoint {
  path: string;
  error: CheckpointError;
}

export interface LatestCheckpoint extends LoadedCheckpoint {
  /** Newer checkpoints that failed to load, newest first; empty when the newest one was fine. */
  skipped: SkippedCheckpoint[];
}

export interface SaveCheckpointOptions {
  /** How many checkpoints to leave in the directory (the one just saved included); default 3. */
  keep?: number;
  /** Told about old checkpoints that could not be deleted (the save itself still succeeds). */
  log?: Logger;
  /** Signs the file (none: unsigned). */
  key?: CheckpointKey;
}

/** Where a load looks for the key a signature must verify with. */
export interface LoadCheckpointOptions {
  /** The key a signature must verify with (from the secret; none: signatures are read, not verified). */
  key?: CheckpointKey;
}

/** Failures that are no damage: the file was made, or changed, by someone without our secret. */
const FORGERY: ReadonlySet<string> = new Set(['wrong_key', 'bad_signature']);

export function checkpointFileName(step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new CheckpointError('invalid_input', `checkpoint step must be a non-negative integer, got ${step}`);
  }
  return `ckpt-${String(step).padStart(9, '0')}.gfck`;
}

/**
 * Writes `ckpt-<step>.gfck` into `dir` (created if missing) atomically and durably, then deletes
 * all but the newest `keep` checkpoints. The file just written is never deleted: if the directory
 * already holds newer steps (a run resumed from an older checkpoint), it is kept together with the
 * newest `keep - 1` others. Returns the checkpoint's path.
 */
export async function saveCheckpoint(
  dir: string,
  step: number,
  meta: unknown,
  tensors: Record<string, Float32Array>,
  options: SaveCheckpointOptions = {},
): Promise<string> {
  const { keep = 3, log, key } = options;
  if (!Number.isSafeInteger(keep) || keep < 1) {
    throw new CheckpointError('invalid_input', `keep must be a positive integer, got ${keep}`);
  }
  const name = checkpointFileName(step);
  const bytes = encodeCheckpoint(meta, tensors, key);
  const path = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);

  try {
    await makeDir(dir);
    const file = await open(tmp, 'wx');
    try {
      try {
        await file.writeFile(bytes);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, path);
    } catch (error) {
      await unlink(tmp).catch(() => undefined);
      throw error;
    }
    await syncDirectory(dir);
  } catch (error) {
    throw new CheckpointError('io', `cannot write checkpoint ${path}: ${errorMessage(error)}`, {
      cause: error,
    });
  }

  const others = (await listCheckpoints(dir)).filter((entry) => entry.path !== path);
  for (const old of others.slice(keep - 1)) {
    try {
      await unlink(old.path);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT')
        log?.warn({ path: old.path, err: error }, 'could not delete old checkpoint');
    }
  }
  return path;
}

/**
 * The checkpoints in `dir`, newest (highest step) first; [] when `dir` does not exist or is not a directory.
 */
export async function listCheckpoints(dir: string): Promise<CheckpointEntry[]> {
  let names: string[];
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    names = entries.filter((e) => e.isFile() || e.isSymbolicLink()).map((e) => e.name);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw new CheckpointError('io', `cannot list checkpoints in ${dir}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const found: (CheckpointEntry & { name: string })[] = [];
  for (const name of names) {
    const step = stepFromName(name);
    if (step !== null) found.push({ step, path: join(dir, name), name });
  }
  found.sort((a, b) => b.step - a.step || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  return found.map(({ step, path }) => ({ step, path }));
}

/** Reads and verifies one checkpoint file; every failure is a CheckpointError naming the path. */
export async function loadCheckpoint(
  path: string,
  options: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  const { key } = options;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if (errorCode(error) === 'ENOENT')
      throw new CheckpointError('not_found', `checkpoint ${path} does not exist`, { cause: error });
    throw new CheckpointError('io', `cannot read checkpoint ${path}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  try {
    const { meta, tensors, signature } = decodeCheckpoint(bytes, key);
    return { path, step: stepFromName(basename(path)), meta, tensors, signature };
  } catch (error) {
    if (error instanceof CheckpointError)
      throw new CheckpointError(error.code, `${path}: ${error.message}`, { cause: error });
    throw error;
  }
}

/**
 * Loads the newest checkpoint in `dir` that decodes; the newer ones that did not are returned in
 * `skipped` (and logged as warnings when `log` is given). Throws a CheckpointError when the
 * directory is missing, holds no checkpoints, or holds only broken ones, and at once when one is
 * signed with another key or altered after signing.
 */
export async function loadLatestCheckpoint(
  dir: string,
  log?: Logger,
  options: LoadCheckpointOptions = {},
): Promise<LatestCheckpoint> {
  const entries = await listCheckpoints(dir);
  if (entries.length === 0)
    throw new CheckpointError('not_found', `no checkpoint in ${dir}: ${await whyEmpty(dir)}`);

  const skipped: SkippedCheckpoint[] = [];
  for (const { path } of entries) {
    try {
      const loaded = await loadCheckpoint(path, options);
      return { ...loaded, skipped };
    } catch (error) {
      if (!(error instanceof CheckpointError) || FORGERY.has(error.code)) throw error;
      skipped.push({ path, error });
      log?.warn({ path, err: error }, 'skipping checkpoint that failed to load; trying the previous one');
    }
  }
  const reasons = skipped.map((s) => s.error.message).join('; ');
  throw new CheckpointError(
    'no_valid_checkpoint',
    `no valid checkpoint in ${dir}: all ${skipped.length} failed to load (${reasons})`,
  );
}

/**
 * Accepts what a user may pass on the command line: a checkpoint directory (loads its newest valid
 * checkpoint, see loadLatestCheckpoint) or one checkpoint file (loads exactly that file, with no
 * fallback; `skipped` is then empty).
 */
export async function resolveCheckpoint(
  pathOrDir: string,
  log?: Logger,
  options: LoadCheckpointOptions = {},
): Promise<LatestCheckpoint> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(pathOrDir)).isDirectory();
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      throw new CheckpointError(
        'not_found',
        `${pathOrDir} does not exist (expected a checkpoint directory or a .gfck file)`,
        { cause: error },
      );
    }
    throw new CheckpointError('io', `cannot access ${pathOrDir}: ${errorMessage(error)}`, { cause: error });
  }
  if (isDirectory) return loadLatestCheckpoint(pathOrDir, log, options);
  return { ...(await loadCheckpoint(pathOrDir, options)), skipped: [] };
}

function stepFromName(name: string): number | null {
  const match = CHECKPOINT_FILE_PATTERN.exec(name);
  if (!match) return null;
  const step = Number(match[1]);
  return Number.isSafeInteger(step) ? step : null;
}

async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    // Windows can neither open nor fsync a directory; NTFS makes the rename durable on its own.
    if (process.platform !== 'win32') throw error;
  }
}

async function whyEmpty(dir: string): Promise<string> {
  try {
    const info = await stat(dir);
    if (!info.isDirectory()) return 'it is not a directory';
    return 'the directory holds no ckpt-<step>.gfck files';
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return 'the directory does not exist';
    return `cannot access it: ${errorMessage(error)}`;
  }
}

function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as { code: unknown }).code)
    : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
