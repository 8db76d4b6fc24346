/**
 * gradfleet's native backend: the wasm backend with its hottest training kernels on oneDNN, through
 * the optional addon (training/kernels/native). Tensors stay on the wasm heap; the addon works on
 * them in place, so every kernel it does not replace keeps running in XNNPACK.
 */
import { availableParallelism } from 'node:os';
import { loadNativeAddon } from '../kernels/native/addon.js';
import { installNativeTrainingKernels } from '../kernels/register.js';
import { type BackendCandidate, BackendUnavailableError } from './backend.js';
import { activateWasm } from './wasm.js';

const NATIVE_PACKAGE = 'gradfleet native addon (oneDNN)';

export const native: BackendCandidate = {
  name: 'native',
  package: NATIVE_PACKAGE,
  async load({ threads = availableParallelism() }) {
    const loaded = loadNativeAddon();
    if (!loaded.addon) throw new BackendUnavailableError(loaded.reason);
    await activateWasm();
    loaded.addon.setThreads(threads);
    const { onednn } = loaded.addon.info();
    return {
      name: 'native',
      package: `${NATIVE_PACKAGE} ${onednn}`,
      gpu: false,
      threads,
      trainingKernels: installNativeTrainingKernels(loaded.addon),
    };
  },
};
