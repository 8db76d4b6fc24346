/** Watching a run from outside, as a person would: the checkpoints it writes (with --checkpoint-every). */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CHECKPOINT_FILE_PATTERN } from '../../coordinator/checkpoint-store.js';
import { until } from './wait.js';

/** The newest checkpointed step in a run directory (-1 before the first). */
export function checkpointedStep(runDir: string): number {
  try {
    return Math.max(
      -1,
      ...readdirSync(join(runDir, 'checkpoints'))
        .map((f) => CHECKPOINT_FILE_PATTERN.exec(f))
        .filter((m) => m !== null)
        .map((m) => Number(m[1])),
    );
  } catch {
    return -1;
  }
}

export function untilStep(runDir: string, step: number, timeoutMs = 60_000): Promise<number> {
  return until(
    `step ${step} in ${runDir}`,
    async () => {
      const at = checkpointedStep(runDir);
      return at >= step ? at : undefined;
    },
    timeoutMs,
  );
}

/** A whole number in [min, max]: each run of a chaos test injects its faults somewhere else. */
export const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
