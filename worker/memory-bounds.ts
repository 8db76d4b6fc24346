/**
 * What a welcome asks of a worker's memory. The coordinator's welcome fixes what a worker allocates: the
 * data sets it is streamed, its copies of the weights, and each micro-batch's input and activations. A
 * welcome from a hostile or mistaken coordinator could ask for more than the machine has (a micro-batch
 * of 3,000,000 samples, images of 4096 × 4096), so before allocating any of it the worker estimates the
 * demand and refuses past its budget, with an error that says which part is too large.
 *
 * The estimate is an upper bound of the order of what is used, not an account: a bound against absurd
 * demands, not a scheduler (two workers on one machine each assume the machine's budget).
 */
import { totalmem } from 'node:os';
import type { MessageOf } from '../protocol/messages.js';
import { layerOutputShapes, paramLayout } from '../training/models/spec.js';
import { getModel } from '../training/models/zoo.js';

/** How much memory a worker lets a run's welcome ask for, and where that figure comes from (for messages). */
export interface MemoryBudget {
  bytes: number;
  /** "--max-memory-mb 512", or "3/4 of this machine's 16.0 GiB". */
  source: string;
}

/** The share of the machine (or its container's limit) a worker takes for itself by default. */
const DEFAULT_SHARE = 0.75;
/**
 * Floats kept per activation value while a micro-batch trains: the forward value (kept for the backward
 * pass), its gradient, and room for a backend's scratch and masks.
 */
const FLOATS_PER_ACTIVATION = 4;
/** Copies of the flat weights a worker holds at once: received, uploaded to the backend, a gradient, a spare. */
const WEIGHT_COPIES = 4;
/** More of them while a replica of local steps trains: the round's start, its weights, Adam's m and v. */
const LOCAL_STEPS_COPIES = 4;

const GiB = 1024 ** 3;
const gib = (bytes: number) => `${(bytes / GiB).toFixed(bytes < GiB ? 2 : 1)} GiB`;

/** `--max-memory-mb` when given, else 3/4 of the memory of this machine or of the container it runs in. */
export function memoryBudget(maxMemoryMb?: number): MemoryBudget {
  if (maxMemoryMb !== undefined)
    return { bytes: maxMemoryMb * 1024 * 1024, source: `--max-memory-mb ${maxMemoryMb}` };
  const machine = totalmem();
  // A cgroup limit below the machine's memory is the one that counts (0, or a huge "max", when there is none).
  const limit = process.constrainedMemory?.() ?? 0;
  const [bytes, what] =
    limit > 0 && limit < machine ? [limit, "this container's"] : [machine, "this machine's"];
  return { bytes: bytes * DEFAULT_SHARE, source: `3/4 of ${what} ${gib(bytes)}` };
}

/** What a welcome asks for, by part, in bytes. */
interface Demand {
  data: number;
  weights: number;
  microBatch: number;
}

function demandOf(w: MessageOf<'welcome'>): Demand {
  const model = getModel(w.model);
  const pixels = (d: MessageOf<'welcome'>['train']) => d.count * (d.height * d.width + 1);
  const activations = layerOutputShapes(model).reduce(
    (sum, shape) => sum + shape.reduce((a, b) => a * b, 1),
    0,
  );
  const input = model.inputShape.reduce((a, b) => a * b, 1);
  // A replica of local steps holds its inner steps' samples, computes one inner batch at a time, and keeps
  // the round's start, its own weights and Adam's two moments besides.
  const computed = w.localSteps?.batchSize ?? w.microBatchSize;
  const copies = WEIGHT_COPIES + (w.localSteps ? LOCAL_STEPS_COPIES : 0);
  return {
    data: pixels(w.train) + pixels(w.test),
    weights: copies * 4 * paramLayout(model).size,
    microBatch: 4 * (w.microBatchSize * input + computed * FLOATS_PER_ACTIVATION * activations),
  };
}

/**
 * Whether what `w` asks for fits `budget`: its images are the size its model takes, and its data sets,
 * weights and micro-batch together fit. Refused: `why`, naming the part that does not fit.
 */
export function checkWelcomeFits(
  w: MessageOf<'welcome'>,
  budget: MemoryBudget,
): { ok: true } | { ok: false; why: string } {
  const model = getModel(w.model);
  const [height, width, channels] = model.inputShape;
  for (const split of ['train', 'test'] as const) {
    const d = w[split];
    if (d.height * d.width !== height * width * channels)
      return {
        ok: false,
        why: `the coordinator's welcome names ${split} images of ${d.height} × ${d.width} pixels, and ${model.name} takes ${height} × ${width}: refusing the run`,
      };
  }
  const demand = demandOf(w);
  const total = demand.data + demand.weights + demand.microBatch;
  if (total <= budget.bytes) return { ok: true };
  const parts = [
    `micro-batches of ${w.microBatchSize} samples ${gib(demand.microBatch)}`,
    `data sets of ${w.train.count} + ${w.test.count} images ${gib(demand.data)}`,
    `weights ${gib(demand.weights)}`,
  ];
  return {
    ok: false,
    why: `the coordinator's welcome asks more memory than this worker has: ${parts.join(', ')}; ${gib(total)} in all, over its budget of ${gib(budget.bytes)} (${budget.source}): refusing the run`,
  };
}
