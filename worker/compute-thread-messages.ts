/**
 * What a worker's main thread and its compute thread (worker/compute-thread.ts) say to each other. Large
 * buffers (weights, contributions, predictions) are transferred, not copied.
 */
import type { LocalSteps } from '../training/step/local-steps.js';
import type { MessageOf } from '../protocol/messages.js';
import type { Dataset } from '../training/data/index.js';
import type { BatchGeometry } from '../training/parallel/step-plan.js';
import type { ComputeFlags, ComputeInfo } from './compute-backend.js';

/** What the thread starts with (its workerData). */
export interface ComputeThreadData {
  flags: ComputeFlags;
}

export type ToComputeThread =
  /** A new run: its model (by name), seed, geometry and data; `cancel` is set non-zero to stop a share early. */
  | {
      type: 'start';
      run: number;
      model: string;
      seed: number;
      geometry: BatchGeometry;
      train: Dataset;
      test: Dataset;
      bucketValues: number;
      localSteps?: LocalSteps;
      cancel: SharedArrayBuffer;
    }
  | { type: 'weights'; version: number; values: Float32Array }
  /** Weights arriving in parts, into shared memory the main thread fills; weightsIn says as each lands. */
  | { type: 'beginWeights'; version: number; values: Float32Array }
  | { type: 'weightsIn'; version: number; from: number; to: number }
  | { type: 'assign'; id: number; assign: MessageOf<'assign'> }
  | { type: 'evaluate'; id: number; request: MessageOf<'evaluate'> }
  /** A contribution's buffer, sent back once its frame is encoded. */
  | { type: 'recycle'; buffer: Float32Array }
  | { type: 'dispose'; run: number }
  /** The end: the thread frees its backend and says `closed`. */
  | { type: 'close' };

export type FromComputeThread =
  | { type: 'ready'; info: ComputeInfo }
  | { type: 'closed' }
  | { type: 'failed'; message: string; unavailable: boolean }
  /** A node, or one of its buckets, computed for task `id`. */
  | {
      type: 'node';
      id: number;
      message: MessageOf<'contribution'> | MessageOf<'bucket'>;
      payload: Float32Array;
    }
  | { type: 'done'; id: number; memoryBytes: number }
  | {
      type: 'evaluation';
      id: number;
      message: MessageOf<'evaluation'>;
      payload: Float32Array;
      memoryBytes: number;
    }
  | { type: 'error'; id: number; message: string };
