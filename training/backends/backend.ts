/** What every backend module shares: the names, what a loaded backend reports, why one was skipped. */
import type { GpuAdapterInfo } from './adapters.js';

export type BackendName = 'tensorflow' | 'webgpu' | 'native' | 'wasm' | 'cpu';

/** A backend that was tried and not used, and why (backend selection logs every one). */
export interface BackendSkip {
  package: string;
  reason: string;
}

export interface BackendInfo {
  name: BackendName;
  /** The npm package (or, for native, the addon) that provided it. */
  package: string;
  gpu: boolean;
  /** Kernels gradfleet installed on top of the stock ones. */
  trainingKernels: readonly string[];
  /** Compute threads, where gradfleet sets them (native: oneDNN's OpenMP threads). */
  threads?: number;
  /** The WebGPU adapter the webgpu backend computes on. */
  adapter?: GpuAdapterInfo;
  skipped: BackendSkip[];
}

export interface BackendOptions {
  /** oneDNN threads for the native backend (default: every core). */
  threads?: number;
  /** The webgpu backend's N-th hardware adapter (default: Dawn's high-performance choice). */
  gpu?: number;
}

export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
}

/** One way to get a backend; `load` throws BackendUnavailableError (with the reason) when it cannot. */
export interface BackendCandidate {
  name: BackendName;
  package: string;
  load(options: BackendOptions): Promise<Omit<BackendInfo, 'skipped'>>;
  /** Frees what keeps the process alive or holds a device (webgpu); the backend can be loaded again later. */
  release?(): void;
}
