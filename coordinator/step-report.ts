/** A finished step's report for the hooks, and the run's per-phase totals: pure bookkeeping. */
import type { StepPosition } from '../training/parallel/step-plan.js';
import type { StepUpdate } from './gradient-reducer.js';
import { nodeKey } from '../training/parallel/reduction-tree.js';
import type { NodeBucketTimes, PhaseTotals, StepReport } from './hooks.js';
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
  /** Values in each tree node (the layout's size). */
  nodeValues: number;
  local?: StepReport['local'];
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** Values sent during and after backward: a bucket counts as during when it went before its node's compute ended. */
function gradientValues(gather: StepGather, nodeValues: number): StepReport['gradientValues'] {
  let duringBackward = 0;
  for (const b of gather.bucketed)
    for (const { values, ms } of b.sent) if (ms < b.computeMs) duringBackward += values;
  const nodes = gather.nodeOwners().length;
  return { duringBackward, afterBackward: Math.max(0, nodes * nodeValues - duringBackward) };
}

function bucketTimes(gather: StepGather, startedAt: number): NodeBucketTimes[] {
  return gather.bucketed.map((b) => ({
    worker: b.worker,
    node: nodeKey(b.node),
    compute_ms: round(b.computeMs),
    values: b.sent.map((s) => s.values),
    sent_ms: b.sent.map((s) => round(s.ms)),
    arrived_ms: b.arrived.map((at) => round(at - startedAt)),
  }));
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
    gradientValues: gradientValues(gather, f.nodeValues),
    buckets: bucketTimes(gather, f.startedAt),
    ...(f.local && { local: f.local }),
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
