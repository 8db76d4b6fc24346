/**
 * How a worker computes: a tfjs backend, or the synthetic stand-in that does not train (it waits
 * and returns a seeded pseudo-gradient). Shared by `worker` and `train` (for its local workers).
 */
import { type Command, Option } from 'commander';
import type { Logger } from '../common/logger.js';
import { BACKEND_CHOICES } from '../training/backends/select.js';
import { DEFAULT_SYNTHETIC_MS, SYNTHETIC_BACKEND } from '../training/backends/synthetic.js';
import { type ComputeChoice, type ComputeFlags, announceCompute } from '../worker/compute-backend.js';
import { ComputeThread } from '../worker/threaded-compute.js';
import { nonNegativeInt, nonNegativeNumber, oneOf, positiveInt } from './options.js';

export type { ComputeChoice, ComputeFlags } from '../worker/compute-backend.js';

const COMPUTE_CHOICES: readonly ComputeChoice[] = [...BACKEND_CHOICES, SYNTHETIC_BACKEND];

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

/**
 * The chosen compute, ready to use, in a thread of its own (worker/threaded-compute.ts): its backend is
 * chosen there and said on `log`; `announce` says it again on another logger, for a host that chose with a
 * quieter one.
 */
export async function computeOf(flags: ComputeFlags, log: Logger) {
  const thread = await ComputeThread.start(flags);
  announceCompute(thread.info, log);
  return {
    name: thread.info.name,
    adapter: thread.info.adapter,
    computeFor: thread.computeFor,
    announce: (other: Logger) => announceCompute(thread.info, other),
    /** tfjs's tensor bytes in the compute thread. */
    memoryBytes: () => thread.memoryBytes,
    close: () => thread.close(),
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
