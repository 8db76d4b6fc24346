/**
 * Per-step figures of a run's steady state, from two runs that differ only in length: a short run
 * of `warmup` steps and a long one of `warmup + steps`. Whatever both runs do once (start-up,
 * joining, the first steps' warm-up, the final evaluation, checkpoint and shutdown) cancels in the
 * difference, which leaves steps warmup+1 … warmup+steps. Each summary's phases_s_per_step × steps
 * gives a phase's total seconds.
 */
import type { RunSummary } from '../coordinator/launch.js';

export const PHASES = ['gather', 'compute', 'reduce', 'optimizer', 'broadcast'] as const;
export type Phase = (typeof PHASES)[number];

export interface SteadyPhases {
  /** Milliseconds per step of each phase (a negative difference is reported as 0, and listed in `clamped`). */
  ms: Record<Phase, number>;
  /** gather + reduce + optimizer + broadcast: the coordinator's bookkeeping between steps is not timed and is negligible. */
  stepMs: number;
  /** Phases whose difference came out below zero (noise in a sub-millisecond phase). */
  clamped: Phase[];
}

const fixed = (v: number) => v.toFixed(3);

/** Total seconds spent in each phase over the run's steps. */
export function phaseTotals(s: RunSummary): Record<Phase, number> {
  return Object.fromEntries(PHASES.map((p) => [p, (s.phases_s_per_step[p] ?? 0) * s.steps])) as Record<Phase, number>;
}

/**
 * The difference long − short per step. A gather or compute difference that is not positive means
 * run-to-run noise swamped the measurement: an error naming `what`.
 */
export function steadyStatePhases(short: RunSummary, long: RunSummary, what: string): SteadyPhases {
  const steps = long.steps - short.steps;
  if (steps <= 0) throw new Error(`${what}: the long run (${long.steps} steps) is not longer than the short one (${short.steps})`);
  const [a, b] = [phaseTotals(short), phaseTotals(long)];
  const raw = Object.fromEntries(PHASES.map((p) => [p, (1000 * (b[p] - a[p])) / steps])) as Record<Phase, number>;
  if (!(raw.gather > 0 && raw.compute > 0)) {
    throw new Error(`${what}: the ${long.steps}-step run's gather/compute time is not above the ${short.steps}-step run's `
      + `(${fixed(b.gather)}/${fixed(b.compute)} s vs ${fixed(a.gather)}/${fixed(a.compute)} s): run-to-run noise exceeds the timed steps; use more --steps`);
  }
  const ms = Object.fromEntries(PHASES.map((p) => [p, Math.max(0, raw[p])])) as Record<Phase, number>;
  return { ms, stepMs: ms.gather + ms.reduce + ms.optimizer + ms.broadcast, clamped: PHASES.filter((p) => raw[p] < 0) };
}
