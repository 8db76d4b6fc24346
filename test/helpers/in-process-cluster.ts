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
import { DEFAULT_ADMISSION } from '../../protocol/admission.js';
import { type RunSummary, launchRun } from '../../coordinator/launch.js';
import type { CoordinatorHooks } from '../../coordinator/hooks.js';
import { decodeFrame } from '../../protocol/codec.js';
import type { Message } from '../../protocol/messages.js';
import { SyntheticRunner } from '../../training/backends/synthetic.js';
import { DEFAULT_ADAM } from '../../training/optimizer/adam.js';
import { inThisThread } from '../../worker/compute.js';
import { type ComputeInterceptor, type WorkerOutcome, runWorker } from '../../worker/worker.js';
import { runShard } from '../../shard/shard.js';
import { type MemoryLink, MemoryListener } from './memory-link.js';

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
  /** The coordinator's /metrics text at the end of the run (with `metrics: true`). */
  metrics?: string;
}

const quiet = pino({ level: process.env.IN_PROCESS_LOG ?? 'silent' });

export interface InProcessOptions {
  maxSteps?: number;
  stepDeadlineMs?: number;
  minWorkers?: number;
  checkpointEvery?: number;
  /** Run reduce and Adam on this many shard reducers (shard/), each on its own in-memory listener. */
  shards?: number;
  /**
   * Shard `shard` drops its link to the coordinator when told to reduce step `atStep` (a crash: its
   * slice of the Adam state is gone); a replacement joins, as a supervisor would start one.
   */
  killShard?: { shard: number; atStep: number; on?: 'reduce' | 'collect' };
  /** Shard `shard` holds each of its step reports back this long (a slow machine). */
  slowShard?: { shard: number; ms: number };
  hooks?: CoordinatorHooks;
  /** Keep the coordinator's Prometheus metrics (served on a free loopback port) and return their text. */
  metrics?: boolean;
}

/**
 * Starts shard reducers for the run on `coordinator`: each serves workers on its own listener, and
 * one that is lost before the run is over is replaced. Returns the way workers reach them.
 */
function startShards(
  coordinator: MemoryListener,
  settings: InProcessOptions,
  running: () => boolean,
): (url: string) => Promise<MemoryLink> {
  const listeners = new Map<string, MemoryListener>();
  const start = (k: number, generation: number): void => {
    const url = `memory://shard-${k}${generation > 0 ? `-r${generation}` : ''}`;
    const listener = new MemoryListener(url);
    listeners.set(url, listener);
    const link = coordinator.connect();
    const kill = generation === 0 && settings.killShard?.shard === k ? settings.killShard : undefined;
    if (kill) {
      const attach = link.attach.bind(link);
      link.attach = (handlers) =>
        attach({
          ...handlers,
          frame: (bytes) => {
            const { message } = decodeFrame(bytes);
            const at =
              message.type === 'reduce'
                ? message.step
                : message.type === 'collect'
                  ? message.version
                  : undefined;
            if (message.type === (kill.on ?? 'reduce') && at === kill.atStep)
              return link.close('fault: shard crashed');
            handlers.frame(bytes);
          },
        });
    }
    const slow = generation === 0 && settings.slowShard?.shard === k ? settings.slowShard : undefined;
    if (slow) {
      const send = link.send.bind(link);
      link.send = (frame, written) => {
        if (decodeFrame(frame).message.type !== 'reduced') return send(frame, written);
        setTimeout(() => send(frame, written), slow.ms);
      };
    }
    void runShard({
      id: `shard-${k}${generation > 0 ? `-r${generation}` : ''}`,
      link,
      listener,
      serves: url,
      log: quiet,
    }).then((outcome) => {
      void listener.close();
      if (outcome.end === 'lost' && running()) start(k, generation + 1);
    });
  };
  for (let k = 0; k < (settings.shards ?? 0); k++) start(k, 0);
  return async (url) => {
    const listener = listeners.get(url);
    if (!listener) throw new Error(`no shard at ${url}`);
    return listener.connect();
  };
}

/**
 * Runs mnist-small for `maxSteps` steps (batch 64, micro-batch 8) with the given workers. A worker
 * whose session is lost (a sharded run turns workers away until its shards serve, and a lost shard
 * ends every worker's session) joins again, as the CLI's worker does.
 */
export async function inProcessRun(
  workers: InProcessWorker[],
  settings: InProcessOptions = {},
): Promise<InProcessRun> {
  const outDir = mkdtempSync(join(tmpdir(), 'gradfleet-in-process-'));
  const listener = new MemoryListener();
  let running = true;
  try {
    const run = await launchRun({
      start: {
        kind: 'fresh',
        config: {
          model: 'mnist-small',
          seed: 7,
          batchSize: 64,
          microBatchSize: 8,
          epochs: 1,
          maxSteps: settings.maxSteps ?? 12,
          adam: DEFAULT_ADAM,
          lrDecay: 1,
          evalChunkSize: 2000,
          wire: 'f32',
          train: 'mnist:train',
          test: 'mnist:test',
        },
      },
      outDir,
      listen: async () => listener,
      transport: 'memory',
      maxFrameBytes: 64 * 1024 * 1024,
      log: quiet,
      minWorkers: settings.minWorkers ?? 1,
      startWorkers: { count: workers.length, graceMs: 10_000 },
      policy: {
        stepDeadlineMs: settings.stepDeadlineMs ?? 30_000,
        heartbeat: { intervalMs: 1000, timeoutMs: 20_000 },
        limits: DEFAULT_ADMISSION,
        checkpointEvery: settings.checkpointEvery ?? 0,
      },
      shards: settings.shards,
      hooks: settings.hooks,
      ...(settings.metrics && { metrics: { host: '127.0.0.1', port: 0 } }),
    });
    const connectShard = startShards(listener, settings, () => running);
    const outcomes = new Map<string, WorkerOutcome | Error>();
    const sessions = workers.map(async (w) => {
      for (let session = 0; ; session++) {
        const link = listener.connect();
        if (w.fault) faultLink(link, w.fault);
        const outcome = await runWorker({
          link,
          workerId: w.id,
          backend: 'synthetic',
          computeFor: inThisThread((model) => new SyntheticRunner(model, 0)),
          log: quiet,
          interceptor: w.interceptor,
          connectShard,
        }).catch((err: Error) => err);
        outcomes.set(w.id, outcome);
        if (outcome instanceof Error || outcome.end !== 'lost' || !running || settings.shards === undefined)
          return;
        await new Promise((r) => setTimeout(r, 5 * Math.min(20, session + 1)));
      }
    });
    const summary = await run.finish();
    running = false;
    await Promise.all(sessions);
    return { summary, workers: outcomes, metrics: await run.metrics?.registry.metrics() };
  } finally {
    running = false;
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
