/**
 * One sharded evaluation of the test set, in fixed chunks: per-chunk loss sums are added in chunk
 * order, so the reported test loss does not depend on how many workers shared the work.
 */
import type { RejectionReason } from '../protocol/errors.js';
import type { MessageOf } from '../protocol/messages.js';
import { type Evaluation, emptyConfusion, evaluationOf } from '../training/step/evaluate.js';
import type { ChunkResult } from './spot-checks.js';
import type { Verdict } from './step-gather.js';
import { type ItemRange, WorkTracker } from './work-tracker.js';

export class EvalGather {
  readonly tracker: WorkTracker;
  private readonly lossSums: Float64Array;
  readonly predictions: Uint8Array;
  /** Per chunk: the worker whose result it is. */
  private readonly owners: (string | undefined)[];

  /** `only`: gather just these chunks (a spot check of some), not the whole test set. */
  constructor(
    readonly round: number,
    private readonly labels: Uint8Array,
    readonly chunkSize: number,
    private readonly classes: number,
    only?: ItemRange,
  ) {
    const chunks = Math.ceil(labels.length / chunkSize);
    this.tracker = new WorkTracker(chunks, only ? only.end - only.first : chunks);
    this.owners = new Array<string | undefined>(chunks).fill(undefined);
    this.lossSums = new Float64Array(this.tracker.items);
    this.predictions = new Uint8Array(labels.length);
  }

  private samplesIn(first: number, end: number): number {
    return Math.min(this.labels.length, end * this.chunkSize) - first * this.chunkSize;
  }

  accept(workerId: string, message: MessageOf<'evaluation'>, payload: Float32Array): Verdict {
    const refuse = (reason: RejectionReason, detail: string): Verdict => ({
      ok: false,
      reason,
      detail,
      reassign: [],
    });
    if (message.round !== this.round)
      return refuse('stale_result', `evaluation round ${message.round} during round ${this.round}`);
    const range = { first: message.first, end: message.first + message.count };
    if (!this.tracker.owes(workerId, range))
      return refuse(
        'unexpected_message',
        `test chunks [${range.first}, ${range.end}) were not assigned to ${workerId}`,
      );
    const samples = this.samplesIn(range.first, range.end);
    const problem =
      payload.length !== samples
        ? `${payload.length} predictions for ${samples} samples`
        : message.lossSums.length !== message.count
          ? `${message.lossSums.length} loss sums for ${message.count} chunks`
          : payload.some((p) => !(Number.isInteger(p) && p >= 0 && p < this.classes))
            ? 'a prediction is not a class index'
            : undefined;
    if (problem) {
      return {
        ok: false,
        reason: 'invalid_message',
        detail: problem,
        reassign: this.tracker.revoke(workerId, range),
      };
    }
    this.tracker.settle(workerId, range);
    message.lossSums.forEach((l, i) => (this.lossSums[range.first + i] = l));
    this.predictions.set(payload, range.first * this.chunkSize);
    this.owners.fill(workerId, range.first, range.end);
    return { ok: true };
  }

  /** Chunks and who computed each. */
  chunkOwners(): { chunk: number; worker: string }[] {
    return this.owners.flatMap((worker, chunk) => (worker === undefined ? [] : [{ chunk, worker }]));
  }

  /** Chunk `chunk`'s result: its predictions and loss sum. */
  chunkResult(chunk: number): ChunkResult {
    const start = chunk * this.chunkSize;
    const end = Math.min(this.labels.length, start + this.chunkSize);
    return {
      predictions: Float32Array.from(this.predictions.subarray(start, end)),
      lossSum: this.lossSums[chunk],
    };
  }

  /** A chunk's result from a worker caught lying, replaced by a recomputation. */
  replaceChunk(chunk: number, { predictions, lossSum }: ChunkResult, workerId: string): void {
    this.predictions.set(predictions, chunk * this.chunkSize);
    this.lossSums[chunk] = lossSum;
    this.owners[chunk] = workerId;
  }

  get complete(): boolean {
    return this.tracker.remaining === 0;
  }

  result(): Evaluation {
    const confusion = emptyConfusion(this.classes);
    this.labels.forEach((label, i) => confusion[label][this.predictions[i]]++);
    return evaluationOf(
      confusion,
      this.lossSums.reduce((a, b) => a + b, 0),
    );
  }
}
