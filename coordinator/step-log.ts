/**
 * The coordinator's per-step debug log line (GRADFLEET_LOG_LEVEL=debug): what a step took, phase by
 * phase. A benchmark that watches the coordinator from outside (bench scale) reads it to know when
 * a step has ended, so it can sample the network at known steps, and what the step's phases were.
 */
import type { StepReport } from './coordinator.js';

export const STEP_DONE_MSG = 'step done';

export interface StepLogFields {
  /** Steps completed, this one included. */
  steps_done: number;
  /** Wall seconds of the step and of each phase. */
  seconds: StepReport['seconds'];
  /** The slowest worker's reported compute, in seconds (0 when none reported). */
  compute_s: number;
}

export function stepLogFields(report: StepReport): StepLogFields {
  return { steps_done: report.position.step + 1, seconds: report.seconds, compute_s: Math.max(0, ...report.computeSeconds.values()) };
}

/** A step-done line as read back: its fields, and when it was logged (ms since the epoch, the logger's `time`). */
export interface StepLogLine extends StepLogFields {
  time: number;
}

/** The fields of a coordinator log line if it is a step-done line; otherwise undefined. */
export function parseStepLogLine(line: string): StepLogLine | undefined {
  if (!line.includes(STEP_DONE_MSG)) return undefined;
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return undefined;
  }
  const e = entry as Partial<StepLogLine> & { msg?: unknown };
  if (e.msg !== STEP_DONE_MSG || typeof e.time !== 'number' || typeof e.steps_done !== 'number' || typeof e.compute_s !== 'number' || typeof e.seconds?.gather !== 'number') {
    return undefined;
  }
  return { steps_done: e.steps_done, seconds: e.seconds, compute_s: e.compute_s, time: e.time };
}
