/**
 * Which samples make up each step and micro-batch, and which seeds they use. Coordinator and
 * workers both derive this from the run config alone, so an assignment names micro-batches by
 * index and no sample list ever travels.
 *
 * An epoch is a seeded permutation of the training set; step s of the epoch takes the permutation's
 * slice [s·B, min(N, (s+1)·B)); micro-batch i of that step is the step's slice [i·m, min(n, (i+1)·m)).
 * Only an epoch's last step and its last micro-batch can be short.
 */
import { shuffledIndices } from '../data/index.js';
import { deriveSeed } from '../rng.js';

export interface BatchGeometry {
  trainCount: number;
  batchSize: number;
  microBatchSize: number;
}

/** The geometry of a run whose batches are `batching` over a training set of `trainCount` samples. */
export function geometryOf(
  batching: { batchSize: number; microBatchSize: number },
  trainCount: number,
): BatchGeometry {
  return { trainCount, batchSize: batching.batchSize, microBatchSize: batching.microBatchSize };
}

/** Offsets [start, end) in an epoch's permutation: the samples of a micro-batch, or of a run of them. */
export interface SampleSpan {
  start: number;
  end: number;
}

export interface StepPosition {
  /** Steps completed since the start of the run (also the weights version the step starts from). */
  step: number;
  epoch: number;
  stepInEpoch: number;
}

export interface StepBatch {
  /** Offset of the step's first sample in the epoch permutation. */
  batchStart: number;
  samples: number;
  microBatches: number;
}

export function validateGeometry(g: BatchGeometry): void {
  for (const [name, v] of Object.entries(g)) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
  if (g.microBatchSize > g.batchSize) {
    throw new RangeError(`micro-batch size ${g.microBatchSize} exceeds the batch size ${g.batchSize}`);
  }
}

export const stepsPerEpoch = (g: BatchGeometry): number => Math.ceil(g.trainCount / g.batchSize);

export function positionOf(g: BatchGeometry, step: number): StepPosition {
  const perEpoch = stepsPerEpoch(g);
  return { step, epoch: Math.floor(step / perEpoch), stepInEpoch: step % perEpoch };
}

export function stepBatch(g: BatchGeometry, stepInEpoch: number): StepBatch {
  const batchStart = stepInEpoch * g.batchSize;
  const samples = Math.min(g.batchSize, g.trainCount - batchStart);
  if (samples <= 0)
    throw new RangeError(`step ${stepInEpoch} is past the end of an epoch of ${g.trainCount} samples`);
  return { batchStart, samples, microBatches: Math.ceil(samples / g.microBatchSize) };
}

/** Samples the run's first `step` steps train on (every epoch holds each sample once). */
export function samplesBefore(g: BatchGeometry, step: number): number {
  const { epoch, stepInEpoch } = positionOf(g, step);
  return epoch * g.trainCount + Math.min(g.trainCount, stepInEpoch * g.batchSize);
}

/** The [start, end) offsets in the epoch permutation of micro-batch `index` of a step. */
export function microBatchRange(g: BatchGeometry, batch: StepBatch, index: number): SampleSpan {
  if (!(index >= 0 && index < batch.microBatches))
    throw new RangeError(`micro-batch ${index} of ${batch.microBatches}`);
  const start = batch.batchStart + index * g.microBatchSize;
  return { start, end: Math.min(batch.batchStart + batch.samples, start + g.microBatchSize) };
}

export const epochOrder = (seed: number, epoch: number, trainCount: number): Uint32Array =>
  shuffledIndices(trainCount, deriveSeed(seed, epoch));

/** Dropout masks depend on (run seed, step, micro-batch), never on which worker draws them. */
export const dropoutSeed = (seed: number, step: number, microBatch: number): number =>
  deriveSeed(seed, step, microBatch);
