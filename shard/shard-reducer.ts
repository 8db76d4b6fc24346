/**
 * A shard reducer's state and math, without I/O: its slice of the weights and of Adam's moments,
 * the slices of this step's tree nodes as they arrive (checked), and the reduce → average → Adam
 * (+ BatchNorm averages) of its slice. Every element sees the float operations the coordinator's
 * in-process reducer would apply to it, so S shards produce the bits one process does.
 */
import type { MessageOf, ShardTensor } from '../protocol/messages.js';
import type { RejectionReason } from '../protocol/errors.js';
import type { ParamLayout } from '../training/models/spec.js';
import type { ParamSlice } from '../training/optimizer/adam.js';
import { applyUpdate } from '../training/optimizer/apply-update.js';
import { scaleTrainable } from '../training/optimizer/clipping.js';
import { ExactSquares } from '../training/optimizer/exact-squares.js';
import { sumOfSquares } from '../training/optimizer/gradient-norm.js';
import { type DistanceSums, distanceSums } from '../training/parallel/node-distance.js';
import { nodeValuesProblem } from '../training/parallel/node-values.js';
import {
  type NodeSum,
  averageOf,
  isValidNode,
  nodeKey,
  reduceNodes,
  rootLevel,
} from '../training/parallel/reduction-tree.js';
import { intersectInto } from '../training/parallel/shard-plan.js';
import { type BatchGeometry, positionOf, stepBatch } from '../training/parallel/step-plan.js';

export interface ShardTensors {
  version: number;
  adamStep: number;
  weights: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

/** A slice taken, with its Σg² over the trainable part (for the coordinator's outlier check), or refused. */
export type SliceCheck =
  | { ok: true; squares: number }
  | { ok: false; reason: RejectionReason; detail: string };

export interface ReducedSlice {
  version: number;
  /**
   * Σ g² of the averaged gradient over the trainable elements of the slice (the global norm is the root of
   * all shards' sums).
   */
  gradSquares: number;
  seconds: { reduce: number; optimizer: number };
}

const sliceKey = (worker: string, level: number, index: number) => `${worker}|${level}:${index}`;

export class ShardReducer {
  private tensors: ShardTensors | undefined;
  /** Tensors of a load in progress (they arrive one frame each). */
  private loading: Partial<Record<ShardTensor, Float32Array>> & { version?: number; adamStep?: number } = {};
  /** This step's node slices by worker and node. */
  private readonly slices = new Map<string, NodeSum>();
  private readonly trainable: ParamSlice[];
  /** The step reduced and waiting for its clip scale (or about to step Adam without one). */
  private reduced:
    | { request: MessageOf<'reduce'>; gradient: Float32Array; reduceSeconds: number }
    | undefined;

  constructor(
    private readonly layout: ParamLayout,
    private readonly geometry: BatchGeometry,
    readonly slice: ParamSlice,
    /** Measure each accepted slice's Σg² (--outlier-factor); otherwise report 0 and skip the pass. */
    private readonly nodeSquares = false,
  ) {
    this.trainable = layout.entries.filter((e) => e.trainable).flatMap((e) => intersectInto(e, slice) ?? []);
  }

  get version(): number | undefined {
    return this.tensors?.version;
  }

  get current(): ShardTensors | undefined {
    return this.tensors;
  }

  /**
   * One tensor of a load; the state once all three of one version are in (the slices held are dropped then).
   */
  load(message: MessageOf<'shardState'>, values: Float32Array): ShardTensors | undefined {
    if (values.length !== this.slice.size)
      throw new Error(`${message.tensor} has ${values.length} values, the slice ${this.slice.size}`);
    if (this.loading.version !== message.version || this.loading.adamStep !== message.adamStep)
      this.loading = { version: message.version, adamStep: message.adamStep };
    // The frame's buffer is ours alone: keep it, no copy.
    this.loading[message.tensor] = values;
    const { weights, adam_m: m, adam_v: v } = this.loading;
    if (!weights || !m || !v) return undefined;
    this.tensors = { version: message.version, adamStep: message.adamStep, weights, m, v };
    this.loading = {};
    this.slices.clear();
    return this.tensors;
  }

  /** Checks and keeps a worker's slice of a node of the step the shard is at. */
  accept(worker: string, message: MessageOf<'contribution'>, values: Float32Array): SliceCheck {
    const refuse = (reason: RejectionReason, detail: string): SliceCheck => ({ ok: false, reason, detail });
    const at = this.tensors?.version;
    if (at === undefined) return refuse('unexpected_message', 'a slice before the shard was loaded');
    if (message.step !== at)
      return refuse('stale_result', `slice of step ${message.step}, the shard is at step ${at}`);
    const { microBatches } = stepBatch(this.geometry, positionOf(this.geometry, message.step).stepInEpoch);
    const node = { level: message.level, index: message.index };
    if (!isValidNode(node, microBatches))
      return refuse(
        'unexpected_message',
        `node ${nodeKey(node)} is not in a tree of ${microBatches} micro-batches (max level ${rootLevel(microBatches)})`,
      );
    if (message.offset !== this.slice.offset)
      return refuse(
        'invalid_message',
        `slice at offset ${message.offset ?? 'none'}, this shard's starts at ${this.slice.offset}`,
      );
    if (values.length !== this.slice.size)
      return refuse(
        'wrong_payload_size',
        `slice has ${values.length} values, this shard's has ${this.slice.size}`,
      );
    const problem = nodeValuesProblem(values, this.slice.offset);
    if (problem) return refuse(problem.reason, problem.detail);
    this.slices.set(sliceKey(worker, message.level, message.index), {
      values,
      lossSum: message.lossSum,
      correct: message.correct,
      samples: message.samples,
    });
    return { ok: true, squares: this.nodeSquares ? sumOfSquares(values, this.trainable) : 0 };
  }

  /** The distance sums between two slices this shard holds (a node and another worker's recomputation of it). */
  compare(c: MessageOf<'compare'>): DistanceSums {
    const held = (n: MessageOf<'compare'>['node']) => {
      const sum = this.slices.get(sliceKey(n.worker, n.level, n.index));
      if (!sum) throw new Error(`compare names node ${n.level}:${n.index} from ${n.worker}, not held here`);
      return sum.values;
    };
    return distanceSums(held(c.node), held(c.against));
  }

  /**
   * Reduces exactly the nodes named, over the step's tree, and steps the slice's Adam; forgets the step's
   * slices. With `r.clip`, stops before Adam and returns the slice's exact Σg²: `finish` takes the step's
   * clip scale.
   */
  reduce(r: MessageOf<'reduce'>): ReducedSlice | ExactSquares {
    const tensors = this.tensors;
    if (!tensors) throw new Error('reduce before the shard was loaded');
    if (r.step !== tensors.version)
      throw new Error(`reduce of step ${r.step}, the shard is at step ${tensors.version}`);
    const t0 = performance.now();
    const named = new Map<string, NodeSum>();
    for (const n of r.nodes) {
      const sum = this.slices.get(sliceKey(n.worker, n.level, n.index));
      if (!sum)
        throw new Error(
          `reduce of step ${r.step} names node ${n.level}:${n.index} from ${n.worker}, whose slice this shard does not hold`,
        );
      named.set(nodeKey(n), sum);
    }
    this.slices.clear();
    const average = averageOf(
      reduceNodes(named, { level: rootLevel(r.microBatches), index: 0 }, r.microBatches),
    );
    this.reduced = { request: r, gradient: average.values, reduceSeconds: (performance.now() - t0) / 1000 };
    if (r.clip) return new ExactSquares().add(average.values, this.trainable);
    return this.finish(r.step, 1);
  }

  /** Scales the reduced step's trainable gradient by the step's clip `scale` (1: none), then steps Adam. */
  finish(step: number, scale: number): ReducedSlice {
    const tensors = this.tensors;
    const reduced = this.reduced;
    if (!tensors || reduced?.request.step !== step)
      throw new Error(`a clip scale for step ${step}, not reduced`);
    this.reduced = undefined;
    const t1 = performance.now();
    scaleTrainable(reduced.gradient, this.trainable, scale);
    const gradSquares = sumOfSquares(reduced.gradient, this.trainable);
    const next = applyUpdate(
      this.layout,
      tensors.weights,
      reduced.gradient,
      { step: tensors.adamStep, m: tensors.m, v: tensors.v },
      reduced.request.rule,
      { inPlace: true, window: this.slice },
    );
    this.tensors = {
      version: step + 1,
      adamStep: next.adam.step,
      weights: next.weights,
      m: next.adam.m,
      v: next.adam.v,
    };
    return {
      version: step + 1,
      gradSquares,
      seconds: { reduce: reduced.reduceSeconds, optimizer: (performance.now() - t1) / 1000 },
    };
  }
}
