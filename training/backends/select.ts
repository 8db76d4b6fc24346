/**
 * Picks the tfjs compute backend at run time: the one asked for, or for `auto` the first in the
 * registry's order that loads, logging every one skipped with its reason.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type Logger, silentLogger } from '../../common/logger.js';
import { adapterLabel } from './adapters.js';
import {
  type BackendCandidate,
  type BackendInfo,
  type BackendOptions,
  type BackendSkip,
  BackendUnavailableError,
} from './backend.js';
import { BACKEND_CHOICES, type BackendChoice, REMEDY, candidatesFor } from './registry.js';

export { BACKEND_CHOICES, type BackendChoice } from './registry.js';
export {
  type BackendInfo,
  type BackendName,
  type BackendOptions,
  BackendUnavailableError,
} from './backend.js';

export function parseBackendChoice(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new Error(`unknown backend '${value}'; choose one of: ${BACKEND_CHOICES.join(', ')}`);
}

let current: BackendCandidate | undefined;

/**
 * Frees the active backend's device (webgpu), so that the process can exit; a later selectBackend loads
 * again.
 */
export function releaseBackend(): void {
  current?.release?.();
  current = undefined;
}

const listSkips = (skipped: BackendSkip[], sep: string) =>
  skipped.map((s) => `${s.package}: ${s.reason}`).join(sep);

/** `native (2 threads)`, `webgpu (GPU) on NVIDIA H100 …`: what a backend is, in a few words. */
function backendLabel(info: Pick<BackendInfo, 'name' | 'gpu' | 'threads' | 'adapter'>): string {
  const threads = info.threads ? ` (${info.threads} thread${info.threads === 1 ? '' : 's'})` : '';
  return `${info.name}${info.gpu ? ' (GPU)' : ''}${threads}${info.adapter ? ` on ${adapterLabel(info.adapter)}` : ''}`;
}

export async function selectBackend(
  choice: BackendChoice,
  log: Logger = silentLogger,
  options: BackendOptions = {},
): Promise<BackendInfo> {
  // tfjs-core registers no gradients; the @tensorflow/tfjs bundle registers all of them (against the same,
  // deduplicated tfjs-core) when imported. Its ESM-only register_all_gradients cannot load in Node. Imported
  // here, not at the top: a third of a second that every command, and every mistake in its flags, would
  // wait for at start.
  await import('@tensorflow/tfjs');
  // Production mode skips per-op debug checks and tfjs's console banners.
  tf.enableProdMode();
  const skipped: BackendSkip[] = [];
  let info: BackendInfo | undefined;
  for (const candidate of candidatesFor(choice)) {
    try {
      info = { ...(await candidate.load(options)), skipped };
      if (current !== candidate && current?.release !== candidate.release) current?.release?.();
      current = candidate;
      break;
    } catch (err) {
      if (!(err instanceof BackendUnavailableError)) throw err;
      skipped.push({ package: candidate.package, reason: err.message });
    }
  }
  if (!info) {
    const remedy = choice === 'auto' ? 'Reinstall gradfleet (npm ci).' : REMEDY[choice];
    throw new BackendUnavailableError(
      `--backend ${choice}: no backend could be loaded (${listSkips(skipped, '; ')}). ${remedy}`,
    );
  }
  await tf.ready();
  announceBackend(info, log);
  return info;
}

/** The backend chosen, and what was skipped on the way, as one INFO line. */
export function announceBackend(info: BackendInfo, log: Logger): void {
  log.info(
    {
      backend: info.name,
      package: info.package,
      gpu: info.gpu,
      threads: info.threads,
      adapter: info.adapter,
      trainingKernels: info.trainingKernels,
      skipped: info.skipped,
    },
    `compute backend: ${backendLabel(info)}` +
      (info.skipped.length
        ? `; skipped ${info.skipped.map((s) => `${s.package} (${s.reason})`).join(', ')}`
        : ''),
  );
}
