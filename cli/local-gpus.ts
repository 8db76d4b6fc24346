/**
 * How many local workers `gradfleet train` starts and which GPU each computes on. The decision is
 * pure (planLocalWorkers: adapters seen, cores, backend, the flags given) so that it is tested for
 * every case without the hardware; only seenAdapters() looks at the machine, and train calls
 * it only where a worker could compute on WebGPU (--backend auto or webgpu).
 */
import { type GpuAdapterInfo, adapterLabel, listAdapters } from '../training/backends/adapters.js';
import { probeAdapters } from '../training/backends/webgpu-probe.js';
import type { ComputeChoice } from './compute-options.js';

export interface LocalWorkerInput {
  backend: ComputeChoice;
  cores: number;
  /** Every WebGPU adapter seen, software ones included; undefined where none were probed. */
  adapters?: readonly GpuAdapterInfo[];
  /** --workers, where given. */
  workers?: number;
  /** --gpu, where given. */
  gpu?: number;
}

export interface LocalWorkerPlan {
  workers: number;
  /** The --gpu flag of local worker i (from 0); undefined: none, the worker takes the default adapter. */
  gpus: (number | undefined)[];
  /** Why this many, on which GPUs: one line for the log. */
  reason: string;
  /** Something the operator should act on (identical GPUs that cannot be told apart). */
  warning?: string;
}

/** Only these backends can compute on a WebGPU adapter: for the others the adapters are not worth probing. */
export const usesWebGpu = (backend: ComputeChoice): boolean => backend === 'auto' || backend === 'webgpu';

/**
 * Identical GPUs describe themselves identically; Dawn, which selects adapters by name, cannot tell them
 * apart.
 */
const identity = (a: GpuAdapterInfo) =>
  `${a.vendor}\u0000${a.architecture}\u0000${a.device}\u0000${a.description}`;

export function planLocalWorkers(input: LocalWorkerInput): LocalWorkerPlan {
  const { backend, cores, workers: asked, gpu } = input;
  const none = (workers: number, reason: string): LocalWorkerPlan => ({
    workers,
    gpus: Array(workers).fill(undefined),
    reason,
  });
  if (gpu !== undefined) {
    // One GPU named for all: more than one worker would only share it.
    const workers = asked ?? 1;
    return {
      workers,
      gpus: Array(workers).fill(gpu),
      reason: `--gpu ${gpu}: ${workers} worker(s) on hardware adapter ${gpu}`,
    };
  }
  const hardware = usesWebGpu(backend) ? (input.adapters ?? []).filter((a) => !a.software) : [];
  if (hardware.length === 0) {
    const why = usesWebGpu(backend)
      ? 'no hardware WebGPU adapter'
      : `--backend ${backend} computes on no WebGPU adapter`;
    return asked === undefined
      ? none(cores, `${why}: one worker per core (${cores})`)
      : none(asked, `${why}: --workers ${asked}`);
  }
  const workers = asked ?? hardware.length;
  const count = asked === undefined ? `one worker per GPU (${workers})` : `--workers ${workers}`;
  const ids = hardware.map(identity);
  if (new Set(ids).size < ids.length) {
    return {
      ...none(workers, `${hardware.length} GPUs: ${count}, all on the default adapter`),
      warning:
        `${hardware.length} GPUs (${adapterLabel(hardware[0])}, …) include identical ones, and Dawn selects adapters by name only: ` +
        'every local worker computes on the same one. To use them all, run one worker per GPU in its own container (NVIDIA_VISIBLE_DEVICES=i; deploy/docker/Dockerfile.webgpu).',
    };
  }
  // More workers than GPUs: spread them round-robin, so that no GPU idles while another has two.
  const gpus = Array.from({ length: workers }, (_, i) => i % hardware.length);
  return {
    workers,
    gpus,
    reason: `${hardware.length} GPUs (${hardware.map(adapterLabel).join('; ')}): ${count}, worker i on --gpu i mod ${hardware.length}`,
  };
}

/**
 * The adapters Dawn sees here, asked in a child process so that Dawn's own warnings stay off the terminal
 * (training/backends/webgpu-probe.ts); none where Dawn is missing or broken (backend selection reports why).
 */
export async function seenAdapters(): Promise<GpuAdapterInfo[]> {
  const probe = await probeAdapters();
  return 'dawn' in probe ? listAdapters(probe.dawn) : [];
}
