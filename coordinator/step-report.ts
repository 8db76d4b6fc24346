/** A finished step's report for the hooks, and the run's per-phase totals: pure bookkeeping. */
import type { StepPosition } from '../training/parallel/step-plan.js';
import type { StepUpdate } from './gradient-reducer.js';
import type { PhaseTotals, StepReport } from './hooks.js';
import type { StepGather } from './step-gather.js';

export interface StepFacts {
  position: StepPosition;
  stepsPerEpoch: number;
  epochSamples: number;
  gather: StepGather;
  update: StepUpdate;
  /** When (performance.now()) the step's work went out, and when every node was in. */
  startedAt: number;
  gatheredAt: number;
  /** Per ready worker: micro-batches per second, as sharding sees it. */
  workerSpeeds: Map<string, number>;
}

export function stepReport(f: StepFacts): StepReport {
  const { gather, update } = f;
  const gatherSeconds = (f.gatheredAt - f.startedAt) / 1000;
  const seconds = {
    total: gatherSeconds + update.seconds.reduce + update.seconds.optimizer + update.seconds.broadcast,
    gather: gatherSeconds,
    ...update.seconds,
  };
  return {
    position: f.position,
    stepsPerEpoch: f.stepsPerEpoch,
    samples: gather.batch.samples,
    epochSamples: f.epochSamples,
    loss: update.loss,
    accuracy: update.accuracy,
    workers: gather.computeSeconds.size,
    learningRate: update.learningRate,
    gradientNorm: update.gradientNorm,
    seconds,
    workerSeconds: new Map([...gather.lastArrival].map(([id, at]) => [id, (at - f.startedAt) / 1000])),
    computeSeconds: gather.computeSeconds,
    workerMicroBatches: gather.microBatchesBy,
    workerSpeeds: f.workerSpeeds,
    clippedFrom: update.clippedFrom,
  };
}

/** Adds one step's phases; compute counts the slowest worker's, the one the step waited for. */
export function addPhases(totals: PhaseTotals, report: StepReport): void {
  const { seconds } = report;
  totals.steps += 1;
  totals.gather += seconds.gather;
  totals.compute += Math.max(0, ...report.computeSeconds.values());
  totals.reduce += seconds.reduce;
  totals.optimizer += seconds.optimizer;
  totals.broadcast += seconds.broadcast;
}
