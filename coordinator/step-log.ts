/**
 * The coordinator's per-step debug log lines (GRADFLEET_LOG_LEVEL=debug): one when a step's tree
 * nodes have all arrived (the network is quiet until the new weights go out), one when the step
 * has ended, with what it took, phase by phase. A benchmark that watches the coordinator from
 * outside (bench scale) reads them to sample the network at known, quiet points of known steps.
 */
import type { NodeBucketTimes, StepReport } from './hooks.js';
import type { StepPosition } from '../training/parallel/step-plan.js';

export const STEP_GATHERED_MSG = 'step gathered';
export const STEP_DONE_MSG = 'step done';

export interface StepDoneFields {
  /** The step's index from the run's start (0 for the first). */
  step: number;
  /** Wall seconds of the step and of each phase. */
  seconds: StepReport['seconds'];
  /** The slowest worker's reported compute, in seconds (0 when none reported). */
  compute_s: number;
  /** Nodes that came in buckets (--bucket-mb): when each bucket went and came. */
  buckets?: NodeBucketTimes[];
}

export const stepGatheredFields = (position: StepPosition): { step: number } => ({ step: position.step });

export function stepDoneFields(report: StepReport): StepDoneFields {
  return {
    step: report.position.step,
    seconds: report.seconds,
    compute_s: Math.max(0, ...report.computeSeconds.values()),
    ...(report.buckets.length > 0 && { buckets: report.buckets }),
  };
}

/** A step line as read back, with when it was logged (ms since the epoch: the logger's `time`). */
export type StepLogLine =
  | { kind: 'gathered'; step: number; time: number }
  | ({ kind: 'done'; time: number } & StepDoneFields);

/** The step line in a coordinator log line, or undefined when it is not one. */
export function parseStepLogLine(line: string): StepLogLine | undefined {
  if (!line.includes(STEP_GATHERED_MSG) && !line.includes(STEP_DONE_MSG)) return undefined;
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return undefined;
  }
  const e = entry as Partial<StepDoneFields> & { msg?: unknown; time?: unknown };
  if (typeof e.time !== 'number' || typeof e.step !== 'number') return undefined;
  if (e.msg === STEP_GATHERED_MSG) return { kind: 'gathered', step: e.step, time: e.time };
  if (e.msg !== STEP_DONE_MSG || typeof e.compute_s !== 'number' || typeof e.seconds?.gather !== 'number')
    return undefined;
  return { kind: 'done', step: e.step, seconds: e.seconds, compute_s: e.compute_s, time: e.time };
}
