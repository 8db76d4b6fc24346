/**
 * The compute thread of a worker (a `worker_threads` thread started by worker/threaded-compute.ts): it
 * chooses the backend and runs every kernel, so that the worker's main thread is free to move frames while
 * a micro-batch computes. Each node's buffer goes to the main thread by transfer and comes back to be
 * refilled.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, releaseBackend } from '../training/backends/select.js';
import { getModel } from '../training/models/zoo.js';
import { chooseCompute } from './compute-backend.js';
import type { ComputeThreadData, FromComputeThread, ToComputeThread } from './compute-thread-messages.js';
import { WorkerCompute } from './compute.js';

if (!parentPort)
  throw new Error('worker/compute-thread.ts runs as a worker thread, started by threaded-compute.ts');
const port = parentPort;

const post = (message: FromComputeThread, transfer: ArrayBuffer[] = []) =>
  port.postMessage(message, transfer);

/**
 * A buffer to give away: the array itself when it owns its whole buffer, else a copy (a view into memory
 * that stays here, such as a backend's heap, must not be detached).
 */
function transferable(values: Float32Array): Float32Array {
  const whole =
    values.byteOffset === 0 &&
    values.byteLength === values.buffer.byteLength &&
    values.buffer instanceof ArrayBuffer;
  return whole ? values : values.slice();
}

async function serve({ flags }: ComputeThreadData): Promise<void> {
  const chosen = await chooseCompute(flags).catch((err: Error) => {
    post({ type: 'failed', message: err.message, unavailable: err instanceof BackendUnavailableError });
  });
  if (!chosen) return;
  let compute: WorkerCompute | undefined;
  let run = 0;
  let cancel = new Int32Array(new SharedArrayBuffer(4));
  // The synthetic stand-in loads no tfjs backend, whose memory there is then none to ask.
  const memoryBytes = () => (chosen.info.backend ? tf.memory().numBytes : 0);
  const failed = (id: number) => (err: Error) => post({ type: 'error', id, message: err.message });
  const running = (id: number): WorkerCompute => {
    if (!compute) throw new Error(`compute thread: task ${id} before a run started`);
    return compute;
  };

  port.on('message', (m: ToComputeThread) => {
    switch (m.type) {
      case 'start':
        compute?.dispose();
        run = m.run;
        cancel = new Int32Array(m.cancel);
        compute = new WorkerCompute({ ...m, model: getModel(m.model) }, chosen.runnerFor);
        return;
      case 'weights':
        return compute?.setWeights(m.version, m.values);
      case 'beginWeights':
        return compute?.beginWeights(m.version, m.values);
      case 'weightsIn':
        return compute?.weightsIn(m.version, m.from, m.to);
      case 'assign': {
        const { id } = m;
        // This run's flag: a share still running when the next run starts must not read the new one's.
        const flag = cancel;
        return void Promise.resolve()
          .then(() =>
            running(id).contributions(
              m.assign,
              ({ message, payload }) => {
                const out = transferable(payload);
                post({ type: 'node', id, message, payload: out }, [out.buffer as ArrayBuffer]);
              },
              () => Atomics.load(flag, 0) !== 0,
            ),
          )
          .then(() => post({ type: 'done', id, memoryBytes: memoryBytes() }), failed(id));
      }
      case 'evaluate': {
        const { id } = m;
        return void Promise.resolve()
          .then(() => running(id).evaluate(m.request))
          .then(({ message, payload }) => {
            const out = transferable(payload);
            post({ type: 'evaluation', id, message, payload: out, memoryBytes: memoryBytes() }, [
              out.buffer as ArrayBuffer,
            ]);
          }, failed(id));
      }
      case 'recycle':
        return compute?.recycle(m.buffer);
      case 'close':
        // A WebGPU device must be destroyed before the thread goes, or it takes the process down with it.
        compute?.dispose();
        compute = undefined;
        releaseBackend();
        post({ type: 'closed' });
        return;
      case 'dispose':
        // A run's end may be told after the next run started (the old session drains its queue first).
        if (m.run !== run) return;
        compute?.dispose();
        compute = undefined;
        return;
      default:
        m satisfies never;
    }
  });
  post({ type: 'ready', info: chosen.info });
}

void serve(workerData as ComputeThreadData);
