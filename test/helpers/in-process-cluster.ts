/**
 * A whole run in one process: the real launchRun (pool, coordinator, Adam, checkpoints, summary)
 * and real workers (runWorker), joined by in-memory links instead of sockets and processes. The
 * synthetic backend stands in for compute, so a run of a dozen steps takes well under a second and
 * a fault can be placed on an exact frame. The spawned-process tests remain the end-to-end checks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { DEFAULT_ADMISSION } from '../../coordinator/admission.js';
import { type RunSummary, launchRun } from '../../coordinator/launch.js';
import { decodeFrame } from '../../protocol/codec.js';
import type { Message } from '../../protocol/messages.js';
import { SyntheticRunner } from '../../training/backends/synthetic.js';
import { DEFAULT_ADAM } from '../../training/optimizer/adam.js';
import { type ComputeInterceptor, type WorkerOutcome, runWorker } from '../../worker/worker.js';
import { MemoryLink, MemoryListener } from './memory-link.js';

export interface InProcessWorker {
  id: string;
  /**
   * Decides each frame the worker sends, given its message: deliver it, drop it, or cut the link
   * before it; `inject` sends a frame of the test's own first.
   */
  fault?: (message: Message, inject: (frame: Uint8Array) => void) => 'deliver' | 'drop' | 'cut';
  interceptor?: ComputeInterceptor;
}

export interface InProcessRun {
  summary: RunSummary;
  workers: Map<string, WorkerOutcome | Error>;
}

const quiet = pino({ level: 'silent' });

/** Runs mnist-small for `maxSteps` steps (batch 64, micro-batch 8) with the given workers. */
export async function inProcessRun(workers: InProcessWorker[], o: { maxSteps?: number; stepDeadlineMs?: number; minWorkers?: number } = {}): Promise<InProcessRun> {
  const outDir = mkdtempSync(join(tmpdir(), 'gradfleet-in-process-'));
  const listener = new MemoryListener();
  try {
    const run = await launchRun({
      start: {
        kind: 'fresh',
        config: {
          model: 'mnist-small', seed: 7, batchSize: 64, microBatchSize: 8, epochs: 1, maxSteps: o.maxSteps ?? 12, adam: DEFAULT_ADAM, lrDecay: 1,
          evalChunkSize: 2000, wire: 'f32', train: 'mnist:train', test: 'mnist:test',
        },
      },
      outDir, listen: async () => listener, transport: 'memory', maxFrameBytes: 64 * 1024 * 1024, log: quiet,
      minWorkers: o.minWorkers ?? 1, startWorkers: { count: workers.length, graceMs: 10_000 },
      policy: { stepDeadlineMs: o.stepDeadlineMs ?? 30_000, heartbeat: { intervalMs: 1000, timeoutMs: 20_000 }, limits: DEFAULT_ADMISSION, checkpointEvery: 0 },
    });
    const outcomes = new Map<string, WorkerOutcome | Error>();
    const sessions = workers.map((w) => {
      const link = listener.connect();
      if (w.fault) faultLink(link, w.fault);
      return runWorker({ link, workerId: w.id, backend: 'synthetic', runnerFor: (model) => new SyntheticRunner(model, 0), log: quiet, interceptor: w.interceptor })
        .then((outcome) => outcomes.set(w.id, outcome), (err: Error) => outcomes.set(w.id, err));
    });
    const summary = await run.finish();
    await Promise.all(sessions);
    return { summary, workers: outcomes };
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

/** Applies a worker's fault schedule to what it sends (frames are plain: no secret in these runs). */
function faultLink(link: MemoryLink, fault: NonNullable<InProcessWorker['fault']>): void {
  const send = link.send.bind(link);
  link.send = (frame, written) => {
    const verdict = fault(decodeFrame(frame).message, (extra) => send(extra));
    if (verdict === 'cut') return link.close('fault: link cut');
    if (verdict === 'drop') return written?.();
    send(frame, written);
  };
}
