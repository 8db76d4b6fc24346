/**
 * Time to accuracy (Pollux's goodput: throughput × statistical efficiency), per training mode: synchronous
 * steps in fp32 or bf16, and local steps with H inner steps over K replicas.
 *
 * - Statistical efficiency: real training on the embedded cluster (`gradfleet train`, real MNIST) for the same
 *   number of epochs in every mode, evaluated every `evalEverySamples` samples: the steps (rounds) and samples
 *   each mode needs to first reach `target` test accuracy, and its accuracy after the same samples as the others.
 *   K is part of the config, so this does not depend on how many processes computed it.
 * - Hardware efficiency: the time of a step (a round) of each mode on the simulated cluster (bench/scale.ts),
 *   `machines` machines on shaped links, each micro-batch (inner batch) computing in `syntheticMs`.
 * - Time to accuracy = steps to target × time per step; one machine with no network needs the synchronous fp32
 *   mode's steps × the compute of a whole batch (K micro-batches × syntheticMs).
 *
 * Every factor is in the report, so a reader can redo each product.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunSummary } from '../coordinator/launch.js';
import type { WireDtype } from '../protocol/wire-dtype.js';
import { summaryOf } from './child-summary.js';
import { type ScaleRow, type ScaleSharding, benchmarkScale } from './scale.js';

const mainScript = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** A training mode: synchronous steps (localSteps null) or rounds of H local steps, and the wire dtype. */
export interface TtaMode {
  name: string;
  localSteps: number | null;
  wire: WireDtype;
}

const MODE_PATTERN = /^(?:sync|local-([1-9]\d*))(?:-(f32|fp16|bf16))?$/;

/** `sync`, `sync-bf16`, `local-16`, `local-16-bf16`: undefined when `name` is none of them. */
export function parseTtaMode(name: string): TtaMode | undefined {
  const m = MODE_PATTERN.exec(name);
  if (!m) return undefined;
  return { name, localSteps: m[1] === undefined ? null : Number(m[1]), wire: (m[2] ?? 'f32') as WireDtype };
}

interface TtaHardware {
  machines: number;
  linkMbit: number;
  syntheticMs: number;
  /** Measured steps (rounds) per mode, after `warmup`. */
  steps: number;
  warmup: number;
  sharding: ScaleSharding;
}

export interface TtaOptions {
  model: string;
  modes: TtaMode[];
  /** Test accuracy to reach, in [0, 1]. */
  target: number;
  /** K: replicas of a round, and micro-batches of a synchronous step (whose batch is K × innerBatch). */
  replicas: number;
  innerBatch: number;
  lr: number;
  lrDecay: number;
  epochs: number;
  seed: number;
  evalEverySamples: number;
  /** The training and test data (`train --train/--test`). */
  data: { train: string; test: string };
  /** Processes computing the statistical runs, and their backend. */
  workers: number;
  backend: string;
  /** null: no simulated cluster (statistics only; no root needed). */
  hardware: TtaHardware | null;
  /**
   * Earlier reports of the same runs (`--json`), whose rows' statistics are taken instead of training again:
   * training's figures are the same bits whenever and however fast it runs, the step times are not.
   */
  statistics?: TtaReport[];
  onRun?: (what: string) => void;
}

interface TtaRow {
  mode: string;
  wire: WireDtype;
  local_steps: number | null;
  /** Samples a step (a round) trains on. */
  samples_per_step: number;
  eval_every_steps: number;
  /** The first evaluation at or above the target; null: not reached within the epochs. */
  steps_to_target: number | null;
  samples_to_target: number | null;
  final_accuracy: number;
  final_samples: number;
  /** Every evaluation of the run: the accuracy curve the steps to target were read from. */
  evaluations: RunSummary['evaluations'];
  weights_sha256: string;
  /** On the simulated cluster: ms per step (round), its efficiency, the busiest link × the model. */
  step_ms: number | null;
  efficiency: number | null;
  busiest_x_model: number | null;
  cpu_busy: number | null;
  /** steps_to_target × step_ms, seconds. */
  tta_s: number | null;
  /** One machine's time ÷ tta_s: above 1, this mode on the cluster beats one machine. */
  speedup: number | null;
}

export interface TtaReport {
  model: string;
  target: number;
  replicas: number;
  inner_batch: number;
  lr: number;
  lr_decay: number;
  epochs: number;
  seed: number;
  workers: number;
  hardware: TtaHardware | null;
  /** One machine, no network: the synchronous fp32 mode's steps × K micro-batches × syntheticMs. */
  one_machine: { steps: number; step_ms: number; seconds: number } | null;
  rows: TtaRow[];
}

export const samplesPerStep = (o: Pick<TtaOptions, 'replicas' | 'innerBatch'>, mode: TtaMode): number =>
  o.replicas * (mode.localSteps ?? 1) * o.innerBatch;

/** Steps between evaluations: about `evalEverySamples` samples in every mode. */
const evalEverySteps = (o: TtaOptions, mode: TtaMode): number =>
  Math.max(1, Math.round(o.evalEverySamples / samplesPerStep(o, mode)));

/** `train` flags for `mode`'s batches: K micro-batches of the inner batch, or K replicas of H inner steps. */
export function modeArgs(o: Pick<TtaOptions, 'replicas' | 'innerBatch'>, mode: TtaMode): string[] {
  const geometry =
    mode.localSteps === null
      ? ['--batch-size', String(o.replicas * o.innerBatch), '--micro-batch', String(o.innerBatch)]
      : [
          '--batch-size',
          String(o.innerBatch),
          '--local-steps',
          String(mode.localSteps),
          '--replicas',
          String(o.replicas),
        ];
  return [...geometry, '--wire', mode.wire];
}

/** The first evaluation at or above `target`, or undefined. */
export function firstReaching(
  evaluations: RunSummary['evaluations'],
  target: number,
): RunSummary['evaluations'][number] | undefined {
  return evaluations.find((e) => e.test_accuracy >= target);
}

async function trainMode(o: TtaOptions, mode: TtaMode): Promise<RunSummary> {
  const out = await mkdtemp(join(tmpdir(), 'gradfleet-tta-'));
  try {
    const child = spawn(
      process.execPath,
      [
        mainScript,
        'train',
        '--model',
        o.model,
        ...modeArgs(o, mode),
        '--lr',
        String(o.lr),
        '--lr-decay',
        String(o.lrDecay),
        '--epochs',
        String(o.epochs),
        '--seed',
        String(o.seed),
        '--eval-every',
        String(evalEverySteps(o, mode)),
        '--workers',
        String(o.workers),
        '--backend',
        o.backend,
        '--train',
        o.data.train,
        '--test',
        o.data.test,
        '--curves-every',
        '0',
        '--out',
        out,
        '--json',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, GRADFLEET_LOG_LEVEL: process.env.GRADFLEET_LOG_LEVEL ?? 'warn' },
      },
    );
    return await summaryOf(child, `train ${o.model} (${mode.name})`);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

async function stepOnCluster(o: TtaOptions, mode: TtaMode, hw: TtaHardware): Promise<ScaleRow> {
  const report = await benchmarkScale({
    workersList: [hw.machines],
    steps: hw.steps,
    warmup: hw.warmup,
    model: o.model,
    microBatch: o.innerBatch,
    link: { mbit: hw.linkMbit },
    transport: 'ws',
    wire: mode.wire,
    syntheticMs: hw.syntheticMs,
    bucketMb: 0,
    natsTopology: 'central',
    localSteps: mode.localSteps === null ? null : { steps: mode.localSteps, replicas: o.replicas },
    shardings: [hw.sharding],
    validateWorkers: null,
  });
  return report.rows[0];
}

/** An earlier report serves only for the same training runs: same model, geometry, optimizer, length, data. */
function checkSameRuns(o: TtaOptions, earlier: TtaReport): void {
  const pairs: [string, unknown, unknown][] = [
    ['model', o.model, earlier.model],
    ['target', o.target, earlier.target],
    ['replicas', o.replicas, earlier.replicas],
    ['inner_batch', o.innerBatch, earlier.inner_batch],
    ['lr', o.lr, earlier.lr],
    ['lr_decay', o.lrDecay, earlier.lr_decay],
    ['epochs', o.epochs, earlier.epochs],
    ['seed', o.seed, earlier.seed],
  ];
  const differ = pairs.filter(([, now, then]) => now !== then).map(([name]) => name);
  if (differ.length > 0)
    throw new Error(`the earlier report's runs differ from these in ${differ.join(', ')}: train again`);
}

export async function benchmarkTta(o: TtaOptions): Promise<TtaReport> {
  if (o.hardware && o.hardware.machines > o.replicas)
    throw new Error(
      `${o.hardware.machines} machines for ${o.replicas} replicas: some would have no work (--machines ≤ --replicas)`,
    );
  for (const earlier of o.statistics ?? []) checkSameRuns(o, earlier);
  const rows: TtaRow[] = [];
  for (const mode of o.modes) {
    const trained = o.statistics?.flatMap((r) => r.rows).find((r) => r.mode === mode.name);
    if (!trained)
      o.onRun?.(`${mode.name}: training ${o.epochs} epoch(s) of ${o.model} on ${o.workers} worker(s)`);
    const summary = trained ? undefined : await trainMode(o, mode);
    const evaluations = summary?.evaluations ?? [];
    const reached = trained
      ? trained.steps_to_target === null
        ? undefined
        : { step: trained.steps_to_target, samples: trained.samples_to_target ?? 0 }
      : firstReaching(evaluations, o.target);
    let cluster: ScaleRow | undefined;
    if (o.hardware) {
      o.onRun?.(`${mode.name}: ${o.hardware.machines} simulated machines at ${o.hardware.linkMbit} Mbit/s`);
      cluster = await stepOnCluster(o, mode, o.hardware);
    }
    const last = evaluations.at(-1);
    rows.push({
      mode: mode.name,
      wire: mode.wire,
      local_steps: mode.localSteps,
      samples_per_step: samplesPerStep(o, mode),
      eval_every_steps: evalEverySteps(o, mode),
      steps_to_target: reached?.step ?? null,
      samples_to_target: reached?.samples ?? null,
      final_accuracy: trained?.final_accuracy ?? last?.test_accuracy ?? Number.NaN,
      final_samples: trained?.final_samples ?? last?.samples ?? 0,
      evaluations: trained?.evaluations ?? evaluations,
      weights_sha256: trained?.weights_sha256 ?? summary!.weights_sha256,
      step_ms: cluster?.step_ms ?? null,
      efficiency: cluster?.efficiency ?? null,
      busiest_x_model: cluster?.busiest.x_model ?? null,
      cpu_busy: cluster?.host_cpu_busy ?? null,
      tta_s: cluster && reached ? (reached.step * cluster.step_ms) / 1000 : null,
      speedup: null,
    });
  }
  const sync = rows.find((r) => r.local_steps === null && r.wire === 'f32');
  const oneMachine =
    o.hardware && sync?.steps_to_target
      ? {
          steps: sync.steps_to_target,
          step_ms: o.replicas * o.hardware.syntheticMs,
          seconds: (sync.steps_to_target * o.replicas * o.hardware.syntheticMs) / 1000,
        }
      : null;
  for (const r of rows) r.speedup = oneMachine && r.tta_s ? oneMachine.seconds / r.tta_s : null;
  return {
    model: o.model,
    target: o.target,
    replicas: o.replicas,
    inner_batch: o.innerBatch,
    lr: o.lr,
    lr_decay: o.lrDecay,
    epochs: o.epochs,
    seed: o.seed,
    workers: o.workers,
    hardware: o.hardware,
    one_machine: oneMachine,
    rows,
  };
}
