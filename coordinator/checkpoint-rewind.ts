/**
 * Checkpoints newer than a step the run went back to describe steps that will be trained again (a caught
 * liar's work is in them): they go, so that a later --resume cannot start from one.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINT_FILE_PATTERN } from './checkpoint-store.js';

/** Deletes the checkpoints in `dir` of steps after `step`; returns their names. */
export async function removeCheckpointsAfter(dir: string, step: number): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const later = names.filter((name) => {
    const m = CHECKPOINT_FILE_PATTERN.exec(name);
    return m !== null && Number(m[1]) > step;
  });
  await Promise.all(later.map((name) => rm(join(dir, name), { force: true })));
  return later;
}
