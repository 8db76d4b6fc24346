/**
 * A worker's compute backend, chosen from its flags: a tfjs backend, or the synthetic stand-in that does not
 * train (it waits and returns a seeded pseudo-gradient). The choice is made where the compute runs (the
 * compute thread, worker/compute-thread.ts); the host only says it.
 */
import type { Logger } from '../common/logger.js';
import type { GpuAdapterInfo } from '../training/backends/adapters.js';
import {
  type BackendChoice,
  type BackendInfo,
  announceBackend,
  selectBackend,
} from '../training/backends/select.js';
import { SYNTHETIC_BACKEND, SyntheticRunner } from '../training/backends/synthetic.js';
import { ModelRunner } from '../training/step/model-runner.js';
import type { RunnerFactory } from './compute.js';

export type ComputeChoice = BackendChoice | typeof SYNTHETIC_BACKEND;

export interface ComputeFlags {
  backend: ComputeChoice;
  syntheticMs: number;
  /** oneDNN threads of the native backend. */
  threads?: number;
  /** The webgpu backend's N-th hardware adapter. */
  gpu?: number;
}

/** What was chosen, as plain data (it crosses from the compute thread to its host). */
export interface ComputeInfo {
  /** The backend's name, told to the coordinator. */
  name: string;
  /** The tfjs backend and what was skipped on the way; none for the synthetic stand-in. */
  backend?: BackendInfo;
  adapter?: GpuAdapterInfo;
  syntheticMs?: number;
}

export async function chooseCompute(
  flags: ComputeFlags,
): Promise<{ info: ComputeInfo; runnerFor: RunnerFactory }> {
  if (flags.backend === SYNTHETIC_BACKEND)
    return {
      info: { name: SYNTHETIC_BACKEND, syntheticMs: flags.syntheticMs },
      runnerFor: (model) => new SyntheticRunner(model, flags.syntheticMs),
    };
  const backend = await selectBackend(flags.backend, undefined, { threads: flags.threads, gpu: flags.gpu });
  return {
    info: { name: backend.name, backend, adapter: backend.adapter },
    runnerFor: (model) => new ModelRunner(model),
  };
}

/** The one INFO line that says what a worker computes on. */
export function announceCompute(info: ComputeInfo, log: Logger): void {
  if (info.backend) return announceBackend(info.backend, log);
  log.info(
    { backend: info.name, synthetic_ms: info.syntheticMs },
    `compute backend: ${info.name} (${info.syntheticMs} ms per micro-batch; does not train)`,
  );
}
