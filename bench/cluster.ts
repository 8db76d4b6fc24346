/**
 * The cluster benchmark: steady-state training throughput of the whole embedded cluster (coordinator
 * plus N local worker processes over WebSockets) per model and worker count, and where a step's
 * time goes: the workers' compute versus the protocol and the coordinator's own work.
 *
 * How the figures are derived. Each configuration runs `gradfleet train --json` twice, as a child
 * process with a throw-away --out directory: a short run of `warmup` steps and a long one of
 * `warmup + steps` steps, same seed and geometry. From each summary, mean × steps gives the total
 * seconds of every phase (gather, compute, reduce, optimizer, broadcast); the long run's totals minus
 * the short run's, divided by `steps`, are the per-step figures of steps warmup+1 … warmup+steps.
 *
 * Why not simply the long run's phases_s_per_step: those means include the first step, which pays
 * the workers' backend warm-up (first kernel calls, V8 compiling the hot paths) and, on mnist-small
 * with 2 wasm workers, takes ~4× a steady step: over 10 steps that inflates the mean by ~30%. And
 * not wall_s: it also counts the final test-set evaluation (10k inferences) and start-up. The phases
 * cover only the step loop, so start-up, evaluation and checkpointing never enter; differencing
 * removes the warm-up steps. The cost is some noise: run-to-run variation of the warm-up steps lands
 * in the difference, spread over `steps` (so use more steps, on an otherwise idle machine, for
 * tighter figures). A gather or compute difference that is not positive means the noise swamped the
 * measurement: an error. A smaller phase whose difference comes out below zero is reported as 0 and
 * listed in `clamped`.
 *
 * A step's time is gather + reduce + optimizer + broadcast (the coordinator's bookkeeping between
 * steps is not timed and is negligible); samples/s = batch / step time. "Protocol" is gather −
 * compute, where compute is the slowest worker's reported pure compute: assigning, the workers'
 * encoding, transfer both ways, decoding, and any waiting for the slowest worker.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunSummary } from '../coordinator/launch.js';
import { summaryOf } from './child-summary.js';

const mainScript = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface ClusterBenchmarkOptions {
  models: string[];
  workers: number[];
  batchSize: number;
  microBatch: number;
  /** Timed steps per configuration. */
  steps: number;
  /** Worker backend choice (wasm, cpu, auto, …), passed to `train --backend`. */
  backend: string;
  /** Shard reducer counts to run each worker count with (1: the coordinator reduces in process). */
  shards?: number[];
  /** --verify-fraction for every run (default 0: no spot checks), to measure what the checks cost. */
  verifyFraction?: number;
  /** --bucket-mb for every run (default 0: nodes sent whole), to measure what overlap gives. */
  bucketMb?: number;
  /** Steps run first and subtracted (default 2: the first pays the warm-up, the second settles it). */
  warmup?: number;
  /** Called before each child run. */
  onRun?: (run: { model: string; workers: number; shards: number; maxSteps: number }) => void;
}

export interface ClusterBenchmark {
  model: string;
  /** The backend the workers reported using. */
  backend: string;
  workers: number;
  /** Shard reducers (1: the coordinator reduced in process). */
  shards: number;
  batch: number;
  micro_batch: number;
  warmup_steps: number;
  steps: number;
  samples_per_s: number;
  ms_per_step: number;
  compute_ms: number;
  /** gather − compute: assign, encode, transfer both ways, decode, waiting for the slowest worker. */
  protocol_ms: number;
  reduce_ms: number;
  optimizer_ms: number;
  broadcast_ms: number;
  /** Share of the step that is not the workers' compute, in percent. */
  overhead_pct: number;
  /** samples/s over the same model's 1-worker row without shards; null without one. */
  speedup: number | null;
  /** Phases whose difference came out below zero (noise in a sub-millisecond phase), reported as 0. */
  clamped: string[];
}

const PHASES = ['gather', 'compute', 'reduce', 'optimizer', 'broadcast'] as const;
type Phase = (typeof PHASES)[number];

const fixed = (v: number) => v.toFixed(3);

async function runTrain(
  settings: ClusterBenchmarkOptions,
  model: string,
  workers: number,
  shards: number,
  maxSteps: number,
): Promise<RunSummary> {
  const out = await mkdtemp(join(tmpdir(), 'gradfleet-bench-'));
  try {
    const args = [
      mainScript,
      'train',
      '--model',
      model,
      '--workers',
      String(workers),
      '--backend',
      settings.backend,
      '--batch-size',
      String(settings.batchSize),
      '--micro-batch',
      String(settings.microBatch),
      '--max-steps',
      String(maxSteps),
      '--out',
      out,
      '--json',
      ...(shards > 1 ? ['--shards', String(shards)] : []),
      ...(settings.verifyFraction ? ['--verify-fraction', String(settings.verifyFraction)] : []),
      ...(settings.bucketMb ? ['--bucket-mb', String(settings.bucketMb)] : []),
    ];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, GRADFLEET_LOG_LEVEL: process.env.GRADFLEET_LOG_LEVEL ?? 'warn' },
    });
    const what = `train ${model} with ${workers} worker(s), ${shards} shard(s), ${maxSteps} steps`;
    const summary = await summaryOf(child, what);
    if (summary.steps !== maxSteps)
      throw new Error(`${what} ran ${summary.steps} steps (the epoch is shorter?); use fewer --steps`);
    if (summary.workers !== workers) throw new Error(`${what}: ${summary.workers} worker(s) took part`);
    return summary;
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** Total seconds spent in each phase over the run's steps. */
function totals(s: RunSummary): Record<Phase, number> {
  return Object.fromEntries(PHASES.map((p) => [p, (s.phases_s_per_step[p] ?? 0) * s.steps])) as Record<
    Phase,
    number
  >;
}

export async function benchmarkCluster(settings: ClusterBenchmarkOptions): Promise<ClusterBenchmark[]> {
  const warmup = settings.warmup ?? 2;
  const rows: ClusterBenchmark[] = [];
  for (const model of settings.models) {
    const modelRows: ClusterBenchmark[] = [];
    for (const workers of settings.workers)
      for (const shards of settings.shards ?? [1]) {
        const lengths = [warmup, warmup + settings.steps];
        const summaries: RunSummary[] = [];
        for (const maxSteps of lengths) {
          settings.onRun?.({ model, workers, shards, maxSteps });
          summaries.push(await runTrain(settings, model, workers, shards, maxSteps));
        }
        const [short, long] = summaries.map(totals);
        const raw = Object.fromEntries(
          PHASES.map((p) => [p, (1000 * (long[p] - short[p])) / settings.steps]),
        ) as Record<Phase, number>;
        if (!(raw.gather > 0 && raw.compute > 0)) {
          throw new Error(
            `${model} with ${workers} worker(s) and ${shards} shard(s): the ${warmup + settings.steps}-step run's gather/compute time is not above the ${warmup}-step run's ` +
              `(${fixed(long.gather)}/${fixed(long.compute)} s vs ${fixed(short.gather)}/${fixed(short.compute)} s): run-to-run noise exceeds the timed steps; use more --steps`,
          );
        }
        const clamped = PHASES.filter((p) => raw[p] < 0);
        const ms = Object.fromEntries(PHASES.map((p) => [p, Math.max(0, raw[p])])) as Record<Phase, number>;
        const step = ms.gather + ms.reduce + ms.optimizer + ms.broadcast;
        const protocol = Math.max(0, ms.gather - ms.compute);
        modelRows.push({
          model,
          backend: summaries[1].backend,
          workers,
          shards,
          batch: settings.batchSize,
          micro_batch: settings.microBatch,
          warmup_steps: warmup,
          steps: settings.steps,
          samples_per_s: (1000 * settings.batchSize) / step,
          ms_per_step: step,
          compute_ms: ms.compute,
          protocol_ms: protocol,
          reduce_ms: ms.reduce,
          optimizer_ms: ms.optimizer,
          broadcast_ms: ms.broadcast,
          overhead_pct: (100 * Math.max(0, step - ms.compute)) / step,
          speedup: null,
          clamped,
        });
      }
    const base = modelRows.find((r) => r.workers === 1 && r.shards === 1);
    for (const r of modelRows) r.speedup = base ? r.samples_per_s / base.samples_per_s : null;
    rows.push(...modelRows);
  }
  return rows;
}
