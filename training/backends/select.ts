/**
 * Picks the tfjs compute backend at run time. Native TensorFlow (GPU, then CPU) is used when its
 * package can be loaded: it is an optional peer dependency, never installed by gradfleet, because
 * its install script downloads libtensorflow. Otherwise wasm with gradfleet's training kernels.
 * The pure-JS cpu backend (~17 s per step) is only used when asked for by name.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core registers no gradients; the @tensorflow/tfjs bundle registers all of them (against the
// same, deduplicated tfjs-core) when imported. Its ESM-only register_all_gradients cannot load in Node.
import '@tensorflow/tfjs';
import { type Logger, silentLogger } from '../../common/logger.js';
import { installWasmTrainingKernels } from '../kernels/register.js';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  /** The npm package that provided it. */
  package: string;
  gpu: boolean;
  /** Kernels gradfleet installed on top of the stock ones. */
  trainingKernels: readonly string[];
  skipped: { package: string; reason: string }[];
}

export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
}

const NATIVE_PACKAGES = [
  { package: '@tensorflow/tfjs-node-gpu', gpu: true },
  { package: '@tensorflow/tfjs-node', gpu: false },
] as const;

const resolvePackage = createRequire(import.meta.url).resolve;

function isInstalled(pkg: string): boolean {
  try {
    resolvePackage(pkg);
    return true;
  } catch {
    return false;
  }
}

async function tryNative(skipped: BackendInfo['skipped']): Promise<BackendInfo | null> {
  for (const candidate of NATIVE_PACKAGES) {
    if (!isInstalled(candidate.package)) {
      skipped.push({ package: candidate.package, reason: 'not installed' });
      continue;
    }
    try {
      await import(candidate.package);
      if (!(await tf.setBackend('tensorflow'))) throw new Error('loaded, but the tensorflow backend failed to initialise');
      return { name: 'tensorflow', package: candidate.package, gpu: candidate.gpu, trainingKernels: [], skipped };
    } catch (err) {
      skipped.push({ package: candidate.package, reason: `failed to load: ${(err as Error).message.split('\n')[0]}` });
    }
  }
  return null;
}

async function useWasm(): Promise<BackendInfo> {
  await import('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend('wasm'))) throw new BackendUnavailableError('the wasm backend failed to initialise');
  return { name: 'wasm', package: '@tensorflow/tfjs-backend-wasm', gpu: false, trainingKernels: installWasmTrainingKernels(), skipped: [] };
}

async function useCpu(): Promise<BackendInfo> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new BackendUnavailableError('the cpu backend failed to initialise');
  return { name: 'cpu', package: '@tensorflow/tfjs-backend-cpu', gpu: false, trainingKernels: [], skipped: [] };
}

export function parseBackendChoice(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new Error(`unknown backend '${value}'; choose one of: ${BACKEND_CHOICES.join(', ')}`);
}

export async function selectBackend(choice: BackendChoice, log: Logger = silentLogger): Promise<BackendInfo> {
  // Production mode skips per-op debug checks and tfjs's console banners.
  tf.enableProdMode();
  let info: BackendInfo;
  switch (choice) {
    case 'tensorflow': {
      const skipped: BackendInfo['skipped'] = [];
      const native = await tryNative(skipped);
      if (!native) {
        throw new BackendUnavailableError(
          `--backend tensorflow: no native TensorFlow could be loaded (${skipped.map((s) => `${s.package}: ${s.reason}`).join('; ')}). ` +
          'Install @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node 4.22.0 next to gradfleet, or use --backend wasm.');
      }
      info = native;
      break;
    }
    case 'auto': {
      const skipped: BackendInfo['skipped'] = [];
      info = (await tryNative(skipped)) ?? { ...(await useWasm()), skipped };
      break;
    }
    case 'wasm':
      info = await useWasm();
      break;
    case 'cpu':
      info = await useCpu();
      break;
  }
  await tf.ready();
  log.info({ backend: info.name, package: info.package, gpu: info.gpu, trainingKernels: info.trainingKernels, skipped: info.skipped },
    `compute backend: ${info.name}${info.gpu ? ' (GPU)' : ''}` +
    (info.skipped.length ? `; skipped ${info.skipped.map((s) => `${s.package} (${s.reason})`).join(', ')}` : ''));
  return info;
}
