/**
 * What a worker computes: the tree nodes of its share of a step, and predictions for test chunks.
 * Pure with respect to the wire: messages in, messages + payloads out.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { type Dataset, gatherLabels, normalizeInto } from '../training/data/index.js';
import type { MessageOf } from '../protocol/messages.js';
import type { ModelSpec } from '../training/models/spec.js';
import {
  type NodeSum,
  decompose,
  leafSum,
  nodeKey,
  nodeRange,
  reduceNodes,
} from '../training/parallel/reduction-tree.js';
import {
  type BatchGeometry,
  dropoutSeed,
  epochOrder,
  microBatchRange,
} from '../training/parallel/step-plan.js';
import { crossEntropySum, forEachBatch } from '../training/step/evaluate.js';
import { type MicroBatchRunner, type WeightsIn, argmaxRows } from '../training/step/model-runner.js';
import { type LocalSteps, innerAdam, replicaContribution } from '../training/step/local-steps.js';
import { ArrivingWeights } from './arriving-weights.js';
import { BucketedNode } from './bucketed-node.js';

export interface ComputedNode {
  message: MessageOf<'contribution'>;
  /** Valid during the `emit` call only: its buffer is recycled for the next micro-batches. */
  payload: Float32Array;
}

/**
 * Part of a node's values, final before the node is (--bucket-mb); the node's own emit, with no payload and
 * `buckets` set, closes them.
 */
export interface ComputedBucket {
  message: MessageOf<'bucket'>;
  /** Valid during the `emit` call only. */
  payload: Float32Array;
}

export type ComputedOutput = ComputedNode | ComputedBucket;

/**
 * Makes the runner a worker computes with, once it knows the run's model (tfjs, or the synthetic stand-in).
 */
export type RunnerFactory = (model: ModelSpec) => MicroBatchRunner;

/** What a run's welcome fixes for its compute: the model, the seed, the batch geometry and the data. */
export interface ComputeRun {
  model: ModelSpec;
  seed: number;
  geometry: BatchGeometry;
  train: Dataset;
  test: Dataset;
  /** --bucket-mb: values per bucket a node's values go ahead in as backward makes them final; 0: whole nodes. */
  bucketValues: number;
  /** Local steps: each micro-batch is a replica, trained for this many inner steps (its delta goes up). */
  localSteps?: LocalSteps;
}

/**
 * What a worker computes with: WorkerCompute in its own thread, or its proxy to a compute thread
 * (worker/threaded-compute.ts), which keeps the kernels off the thread that moves the bytes.
 */
export interface Compute {
  /** Weights `version`, whole. */
  setWeights(version: number, values: Float32Array): void;
  /**
   * Weights `version` begin to arrive in `values` (shared memory the caller fills); weightsIn says as each part
   * lands. Work for the version may be asked for at once: it waits for what it needs.
   */
  beginWeights(version: number, values: Float32Array): void;
  weightsIn(version: number, from: number, to: number): void;
  contributions(
    assign: MessageOf<'assign'>,
    emit: (out: ComputedOutput) => void,
    cancelled?: () => boolean,
  ): Promise<void>;
  evaluate(
    request: MessageOf<'evaluate'>,
  ): Promise<{ message: MessageOf<'evaluation'>; payload: Float32Array }>;
  dispose(): void;
}

export type ComputeFactory = (run: ComputeRun) => Compute;

/** Compute in the caller's own thread. */
export const inThisThread =
  (runnerFor: RunnerFactory): ComputeFactory =>
  (run) =>
    new WorkerCompute(run, runnerFor);

export class WorkerCompute implements Compute {
  private readonly runner: MicroBatchRunner;
  private weights: ArrivingWeights | undefined;
  private uploadedVersion = -1;
  private order: { epoch: number; indices: Uint32Array } | undefined;
  private readonly images: Float32Array;
  private readonly labels: Uint8Array;
  /** Leaf buffers whose node has been emitted, for the next micro-batches to fill. */
  private readonly spare: Float32Array[] = [];

  readonly model: ModelSpec;
  private readonly seed: number;
  private readonly geometry: BatchGeometry;
  private readonly train: Dataset;
  private readonly test: Dataset;
  private readonly bucketValues: number;
  private readonly localSteps: LocalSteps | undefined;

  constructor(run: ComputeRun, runnerFor: RunnerFactory) {
    ({
      model: this.model,
      seed: this.seed,
      geometry: this.geometry,
      train: this.train,
      test: this.test,
      bucketValues: this.bucketValues,
      localSteps: this.localSteps,
    } = run);
    const { geometry, train } = run;
    this.runner = runnerFor(run.model);
    this.images = new Float32Array(geometry.microBatchSize * train.pixelsPerImage);
    this.labels = new Uint8Array(geometry.microBatchSize);
  }

  get layoutSize(): number {
    return this.runner.layout.size;
  }

  setWeights(version: number, values: Float32Array): void {
    this.beginWeights(version, values);
    this.weightsIn(version, 0, values.length);
  }

  beginWeights(version: number, values: Float32Array): void {
    if (values.length !== this.runner.layout.size)
      throw new Error(`weights have ${values.length} values, the layout needs ${this.runner.layout.size}`);
    this.weights = new ArrivingWeights(version, values);
    // A run that went back (a caught liar) sends a version number again, with other values.
    this.uploadedVersion = -1;
  }

  weightsIn(version: number, from: number, to: number): void {
    if (this.weights?.version === version) this.weights.arrived(from, to);
  }

  /**
   * The weights of `version` given to the runner: all of them, once in, or (a runner that computes layer by
   * layer) at once, with a wait for each layer's range, which it makes.
   */
  private async useWeights(version: number): Promise<WeightsIn | undefined> {
    const weights = this.weights;
    if (weights?.version !== version)
      throw new Error(
        `asked to compute with weights version ${version}, holding ${weights?.version ?? 'none'}`,
      );
    // A replica starts its inner steps from the whole vector.
    if (!this.runner.layerByLayer || this.localSteps) await weights.whenIn(0, weights.values.length);
    if (this.uploadedVersion !== version) {
      this.runner.setWeights(weights.values);
      this.uploadedVersion = version;
    }
    return weights.complete ? undefined : (from, to) => weights.whenIn(from, to);
  }

  private epochIndices(epoch: number): Uint32Array {
    if (this.order?.epoch !== epoch)
      this.order = { epoch, indices: epochOrder(this.seed, epoch, this.train.count) };
    return this.order.indices;
  }

  /**
   * Computes the assignment node by node, calling `emit` as each node is ready (so sends overlap
   * compute). Yields to the event loop between micro-batches so heartbeats flow during long shares.
   */
  async contributions(
    assign: MessageOf<'assign'>,
    emit: (out: ComputedOutput) => void,
    cancelled: () => boolean = () => false,
  ): Promise<void> {
    const weightsIn = await this.useWeights(assign.weightsVersion);
    const batch = {
      batchStart: assign.batchStart,
      samples: assign.batchSamples,
      microBatches: Math.ceil(assign.batchSamples / this.geometry.microBatchSize),
    };
    const order = this.epochIndices(assign.epoch);
    const trainLabels = this.train.labels!;
    const local = this.localSteps && {
      start: this.weights!.values.slice(),
      inner: { adam: innerAdam(this.localSteps, assign.epoch), batchSize: this.localSteps.batchSize },
    };
    for (const node of decompose(assign.first, assign.first + assign.count, batch.microBatches)) {
      const nodeId = { step: assign.step, level: node.level, index: node.index };
      let seconds = 0;
      const { first, end } = nodeRange(node, batch.microBatches);
      const leaves = new Map<string, NodeSum>();
      let bucketed: BucketedNode | undefined;
      let sum: NodeSum | undefined;
      const bucketsSent: { values: number; ms: number }[] = [];
      const nodeStarted = performance.now();
      for (let i = first; i < end; i++) {
        if (i > first) await yieldToEventLoop();
        if (cancelled()) return;
        const started = performance.now();
        const { start, end: stop } = microBatchRange(this.geometry, batch, i);
        const idx = order.subarray(start, stop);
        // The node's values become final during its last micro-batch's backward: they can go from there.
        if (i === end - 1 && this.bucketValues > 0)
          bucketed = new BucketedNode(
            node,
            batch.microBatches,
            leaves,
            { index: i, count: idx.length },
            this.runner.layout.size,
            this.bucketValues,
            (offset, payload) => {
              if (cancelled()) return;
              emit({
                message: { ...nodeId, type: 'bucket', offset, payloadValues: payload.length },
                payload,
              });
              bucketsSent.push({ values: payload.length, ms: performance.now() - nodeStarted });
            },
          );
        const microBatch = {
          images: normalizeInto(this.train, idx, this.images),
          labels: gatherLabels(trainLabels, idx, this.labels),
          count: idx.length,
        };
        const seed = dropoutSeed(this.seed, assign.step, i);
        const c = local
          ? await replicaContribution(
              this.runner,
              local.start,
              microBatch,
              seed,
              local.inner,
              this.spare.pop(),
              bucketed && ((values, from, to) => bucketed!.final(values, from, to)),
            )
          : await this.runner.contribution(
              microBatch,
              seed,
              this.spare.pop(),
              bucketed && ((values, from, to) => bucketed!.final(values, from, to)),
              weightsIn,
            );
        seconds += (performance.now() - started - (c.weightsWaitMs ?? 0)) / 1000;
        if (bucketed) sum = bucketed.finish(c.values, c);
        else leaves.set(nodeKey({ level: 0, index: i }), leafSum(c.values, c.loss, c.correct, c.count));
      }
      // A runner may wait (synthetic): the session can have ended meanwhile.
      if (cancelled()) return;
      sum ??= reduceNodes(leaves, node, batch.microBatches);
      emit({
        message: {
          ...nodeId,
          type: 'contribution',
          lossSum: sum.lossSum,
          correct: sum.correct,
          samples: sum.samples,
          computeSeconds: seconds,
          payloadValues: bucketed ? 0 : sum.values.length,
          ...(bucketed && { buckets: bucketed.buckets, bucketsSent }),
        },
        payload: bucketed ? new Float32Array(0) : sum.values,
      });
      // Sending encoded the node into a frame of its own: every leaf buffer is free again. One handed to
      // another thread (detached here) comes back through recycle.
      for (const leaf of leaves.values()) if (leaf.values.length > 0) this.spare.push(leaf.values);
    }
  }

  /** A buffer of an emitted node, back from the thread that sent it: the next micro-batches fill it. */
  recycle(buffer: Float32Array): void {
    if (buffer.length === this.runner.layout.size) this.spare.push(buffer);
  }

  /**
   * Predictions for the requested test chunks; yields between chunks so heartbeats flow during a long share.
   */
  async evaluate(
    request: MessageOf<'evaluate'>,
  ): Promise<{ message: MessageOf<'evaluation'>; payload: Float32Array }> {
    await (await this.useWeights(request.weightsVersion))?.(0, this.runner.layout.size);
    const labels = this.test.labels;
    if (!labels) throw new Error('the test set has no labels');
    const { chunkSize, first, count } = request;
    const start = first * chunkSize;
    const end = Math.min(this.test.count, (first + count) * chunkSize);
    if (start >= end)
      throw new Error(`test chunks [${first}, ${first + count}) are outside ${this.test.count} samples`);
    const predictions = new Float32Array(end - start);
    const lossSums: number[] = [];
    for (let chunk = start; chunk < end; chunk += chunkSize) {
      if (chunk > start) await yieldToEventLoop();
      await forEachBatch(
        this.test,
        chunkSize,
        async (images, at, n) => {
          const logits = await this.runner.logits(images, n);
          lossSums.push(crossEntropySum(logits, labels.subarray(at, at + n), this.model.classes));
          predictions.set(argmaxRows(logits, this.model.classes), at - start);
        },
        chunk,
        Math.min(end, chunk + chunkSize),
      );
    }
    return {
      message: {
        type: 'evaluation',
        round: request.round,
        first,
        count,
        lossSums,
        payloadValues: predictions.length,
      },
      payload: predictions,
    };
  }

  dispose(): void {
    this.runner.dispose();
  }
}
