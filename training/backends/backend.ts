/** What every backend module shares: the names, what a loaded backend reports, why one was skipped. */

export type BackendName = 'tensorflow' | 'native' | 'wasm' | 'cpu';

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
  skipped: BackendSkip[];
}

export interface BackendOptions {
  /** oneDNN threads for the native backend (default: every core). */
  threads?: number;
}

export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
}

/** One way to get a backend; `load` throws BackendUnavailableError (with the reason) when it cannot. */
export interface BackendCandidate {
  name: BackendName;
  package: string;
  load(options: BackendOptions): Promise<Omit<BackendInfo, 'skipped'>>;
}
