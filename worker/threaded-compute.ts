/**
 * A worker's compute in a thread of its own (worker/compute-thread.ts). The kernels of a micro-batch run
 * there, so the main thread keeps moving frames, heartbeats and weights while they do: a node queued before
 * a 150 ms micro-batch leaves at once, not after it. `RemoteCompute` is the main thread's side of a run: the
 * same Compute interface as WorkerCompute, answered by messages.
 */
import { Worker } from 'node:worker_threads';
import { BackendUnavailableError } from '../training/backends/select.js';
import type { ComputeFlags, ComputeInfo } from './compute-backend.js';
import type { ComputeThreadData, FromComputeThread, ToComputeThread } from './compute-thread-messages.js';
import type { Compute, ComputeFactory, ComputeRun, ComputedOutput } from './compute.js';
import type { MessageOf } from '../protocol/messages.js';
import { paramLayout } from '../training/models/spec.js';

type Evaluated = { message: MessageOf<'evaluation'>; payload: Float32Array };

interface Task {
  onNode?: (out: ComputedOutput) => void;
  resolve: (value: Evaluated | undefined) => void;
  reject: (err: Error) => void;
}

/** How often a share in progress looks at its `cancelled` (the thread stops at its next micro-batch). */
const CANCEL_POLL_MS = 20;
/** How long closing waits for the thread to free its backend before ending it regardless. */
const CLOSE_GRACE_MS = 5_000;

export class ComputeThread {
  private readonly tasks = new Map<number, Task>();
  private nextId = 0;
  private runs = 0;
  private dead: Error | undefined;
  private closed: (() => void) | undefined;
  /** tfjs's tensor bytes in the thread, as of its last finished task. */
  memoryBytes = 0;

  private constructor(
    private readonly thread: Worker,
    readonly info: ComputeInfo,
  ) {
    thread.on('message', (m: FromComputeThread) => this.onMessage(m));
    thread.on('error', (err) => this.die(new Error(`the compute thread failed: ${err.message}`)));
    thread.on('exit', (code) => this.die(new Error(`the compute thread exited (${code})`)));
  }

  /** Starts the thread and waits for its backend (BackendUnavailableError when none loads). */
  static async start(flags: ComputeFlags): Promise<ComputeThread> {
    const data: ComputeThreadData = { flags };
    const thread = new Worker(new URL('./compute-thread.js', import.meta.url), { workerData: data });
    // The worker's sockets keep the process alive while it has work; the thread alone must not.
    thread.unref();
    const first = await new Promise<FromComputeThread>((resolve, reject) => {
      thread.once('message', resolve);
      thread.once('error', reject);
      thread.once('exit', (code) =>
        reject(new Error(`the compute thread exited (${code}) before choosing a backend`)),
      );
    });
    if (first.type === 'ready') return new ComputeThread(thread, first.info);
    await thread.terminate();
    if (first.type === 'failed')
      throw first.unavailable ? new BackendUnavailableError(first.message) : new Error(first.message);
    throw new Error(`the compute thread said ${first.type} before choosing a backend`);
  }

  /** A run's compute in the thread (the thread's previous run, if any, is dropped). */
  readonly computeFor: ComputeFactory = (run) => new RemoteCompute(this, ++this.runs, run);

  post(message: ToComputeThread, transfer: ArrayBuffer[] = []): void {
    if (!this.dead) this.thread.postMessage(message, transfer);
  }

  task(send: (id: number) => ToComputeThread, onNode?: Task['onNode']): Promise<Evaluated | undefined> {
    if (this.dead) return Promise.reject(this.dead);
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.tasks.set(id, { onNode, resolve, reject });
      this.post(send(id));
    });
  }

  private onMessage(m: FromComputeThread): void {
    const task = 'id' in m ? this.tasks.get(m.id) : undefined;
    switch (m.type) {
      case 'node':
        task?.onNode?.({ message: m.message, payload: m.payload } as ComputedOutput);
        return this.post({ type: 'recycle', buffer: m.payload }, [m.payload.buffer as ArrayBuffer]);
      case 'done':
        this.memoryBytes = m.memoryBytes;
        this.tasks.delete(m.id);
        return task?.resolve(undefined);
      case 'evaluation':
        this.memoryBytes = m.memoryBytes;
        this.tasks.delete(m.id);
        return task?.resolve({ message: m.message, payload: m.payload });
      case 'error':
        this.tasks.delete(m.id);
        return task?.reject(new Error(m.message));
      case 'closed':
        return this.closed?.();
      case 'ready':
      case 'failed':
        return;
      default:
        m satisfies never;
    }
  }

  private die(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    for (const task of this.tasks.values()) task.reject(err);
    this.tasks.clear();
  }

  /** Frees the thread's backend (within CLOSE_GRACE_MS), then ends the thread. */
  async close(): Promise<void> {
    if (!this.dead) {
      const freed = new Promise<void>((resolve) => {
        this.closed = resolve;
        setTimeout(resolve, CLOSE_GRACE_MS).unref();
      });
      this.post({ type: 'close' });
      await freed;
    }
    this.die(new Error('the compute thread was closed'));
    await this.thread.terminate();
  }
}

/** One run's compute, as the worker sees it; every call is a message to the thread. */
class RemoteCompute implements Compute {
  private readonly layoutSize: number;
  private readonly cancel = new Int32Array(new SharedArrayBuffer(4));
  private disposed = false;

  constructor(
    private readonly thread: ComputeThread,
    private readonly run: number,
    { model, ...rest }: ComputeRun,
  ) {
    this.layoutSize = paramLayout(model).size;
    const cancel = this.cancel.buffer as SharedArrayBuffer;
    thread.post({ type: 'start', run, model: model.name, ...rest, cancel });
  }

  setWeights(version: number, values: Float32Array): void {
    if (values.length !== this.layoutSize)
      throw new Error(`weights have ${values.length} values, the layout needs ${this.layoutSize}`);
    // A copy of its own to give away: the frame it came in may hold more than the weights.
    const own = values.slice();
    this.thread.post({ type: 'weights', version, values: own }, [own.buffer]);
  }

  beginWeights(version: number, values: Float32Array): void {
    if (values.length !== this.layoutSize)
      throw new Error(`weights have ${values.length} values, the layout needs ${this.layoutSize}`);
    if (!(values.buffer instanceof SharedArrayBuffer))
      throw new Error(
        'weights arriving in parts must be in shared memory, for the compute thread to read them',
      );
    this.thread.post({ type: 'beginWeights', version, values });
  }

  weightsIn(version: number, from: number, to: number): void {
    this.thread.post({ type: 'weightsIn', version, from, to });
  }

  async contributions(
    assign: MessageOf<'assign'>,
    emit: (out: ComputedOutput) => void,
    cancelled: () => boolean = () => false,
  ): Promise<void> {
    const stopIfCancelled = () => {
      if (cancelled()) Atomics.store(this.cancel, 0, 1);
    };
    if (!this.disposed) Atomics.store(this.cancel, 0, 0);
    const poll = setInterval(stopIfCancelled, CANCEL_POLL_MS);
    try {
      await this.thread.task(
        (id) => ({ type: 'assign', id, assign }),
        (node) => {
          stopIfCancelled();
          if (Atomics.load(this.cancel, 0) === 0) emit(node);
        },
      );
    } finally {
      clearInterval(poll);
    }
  }

  async evaluate(request: MessageOf<'evaluate'>): Promise<Evaluated> {
    return (await this.thread.task((id) => ({ type: 'evaluate', id, request })))!;
  }

  dispose(): void {
    this.disposed = true;
    Atomics.store(this.cancel, 0, 1);
    this.thread.post({ type: 'dispose', run: this.run });
  }
}
