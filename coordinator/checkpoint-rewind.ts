/**
 * Checkpoints newer than a step the run went back to describe steps that will be trained again (a caught
 * liar's work is in them): they go, so that a later --resume cannot start from one.
 */
import { rm } from 'node:fs/promises';
import { listCheckpoints } from './checkpoint-store.js';

/** Deletes the checkpoints in `dir` of steps after `step`. */
export async function removeCheckpointsAfter(dir: string, step: number): Promise<void> {
  const later = (await listCheckpoints(dir)).filter((c) => c.step > step);
  await Promise.all(later.map((c) => rm(c.path, { force: true })));
}
