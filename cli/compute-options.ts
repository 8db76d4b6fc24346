/**
 * How a worker computes: a tfjs backend, or the synthetic stand-in that does not train (it waits
 * and returns a seeded pseudo-gradient). Shared by `worker` and `train` (for its local workers).
 */
import { type Command, Option } from 'commander';
import type { Logger } from '../common/logger.js';
import type { GpuAdapterInfo } from '../training/backends/adapters.js';
import { BACKEND_CHOICES, announceBackend, selectBackend } from '../training/backends/select.js';
import { DEFAULT_SYNTHETIC_MS, SYNTHETIC_BACKEND, SyntheticRunner } from '../training/backends/synthetic.js';
import { ModelRunner } from '../training/step/model-runner.js';
import type { RunnerFactory } from '../worker/compute.js';
import { nonNegativeInt, nonNegativeNumber, oneOf, positiveInt } from './options.js';

const COMPUTE_CHOICES = [...BACKEND_CHOICES, SYNTHETIC_BACKEND] as const;
export type ComputeChoice = (typeof COMPUTE_CHOICES)[number];

export interface ComputeFlags {
  backend: ComputeChoice;
  syntheticMs: number;
  /** oneDNN threads of the native backend. */
  threads?: number;
  /** The webgpu backend's N-th hardware adapter. */
  gpu?: number;
}

/** `whose`: how the help names the backend's owner ("workers' " for train's local workers). */
export function addComputeOptions(cmd: Command, whose = ''): Command {
  return cmd
    .addOption(
      new Option(
        '--backend <name>',
        `${whose}compute backend (${COMPUTE_CHOICES.join(', ')}); ` +
          `${SYNTHETIC_BACKEND} does NOT train a model: it waits --synthetic-ms per micro-batch and returns a seeded pseudo-gradient ` +
          '(placeholder loss ln 10), to measure the cluster without compute',
      )
        .argParser(oneOf(COMPUTE_CHOICES))
        .default('auto'),
    )
    .option(
      '--synthetic-ms <ms>',
      `with --backend ${SYNTHETIC_BACKEND}: wall time of each micro-batch, spent waiting (no CPU)`,
      nonNegativeNumber,
      DEFAULT_SYNTHETIC_MS,
    )
    .option(
      '--threads <n>',
      'oneDNN threads of the native backend (default: every core; train gives each local worker cores ÷ workers)',
      positiveInt,
    )
    .option(
      '--gpu <n>',
      'webgpu: compute on the N-th hardware adapter (0-based; default: the high-performance one; train gives local worker i GPU i)',
      nonNegativeInt,
    );
}

/** The chosen compute, ready to use: its name for the coordinator, and how to make its runner. */
export async function computeOf(
  flags: ComputeFlags,
  log: Logger,
): Promise<{
  name: string;
  adapter?: GpuAdapterInfo;
  runnerFor: RunnerFactory;
  /** Logs the backend line (as selectBackend does), for a host that chose with a quieter logger. */
  announce: (log: Logger) => void;
}> {
  if (flags.backend === SYNTHETIC_BACKEND) {
    log.info(
      { backend: SYNTHETIC_BACKEND, synthetic_ms: flags.syntheticMs },
      `compute backend: ${SYNTHETIC_BACKEND} (${flags.syntheticMs} ms per micro-batch; does not train)`,
    );
    return {
      name: SYNTHETIC_BACKEND,
      runnerFor: (model) => new SyntheticRunner(model, flags.syntheticMs),
      announce: (log) => log.info({ backend: SYNTHETIC_BACKEND }, `compute backend: ${SYNTHETIC_BACKEND}`),
    };
  }
  const backend = await selectBackend(flags.backend, log, { threads: flags.threads, gpu: flags.gpu });
  return {
    name: backend.name,
    adapter: backend.adapter,
    runnerFor: (model) => new ModelRunner(model),
    announce: (log) => announceBackend(backend, log),
  };
}

/** The flags that give a local worker the same compute. */
export function workerComputeArgs(flags: ComputeFlags): string[] {
  return [
    '--backend',
    flags.backend,
    ...(flags.backend === SYNTHETIC_BACKEND ? ['--synthetic-ms', String(flags.syntheticMs)] : []),
    ...(flags.threads === undefined ? [] : ['--threads', String(flags.threads)]),
    ...(flags.gpu === undefined ? [] : ['--gpu', String(flags.gpu)]),
  ];
}
