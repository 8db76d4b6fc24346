/** tfjs's wasm backend (XNNPACK) with gradfleet's training kernels, which it lacks or runs slowly. */
import * as tf from '@tensorflow/tfjs-core';
import { installWasmTrainingKernels } from '../kernels/register.js';
import { readConcatenated } from '../kernels/wasm-backend.js';
import { type BackendCandidate, BackendUnavailableError } from './backend.js';
import { registerFlatReader } from './read-flat.js';

const WASM_PACKAGE = '@tensorflow/tfjs-backend-wasm';

/**
 * Makes wasm the active tfjs backend (the native backend runs on it too), whose tensors are read back
 * straight out of its heap.
 */
export async function activateWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend('wasm')))
    throw new BackendUnavailableError('the wasm backend failed to initialise');
  registerFlatReader('wasm', readConcatenated);
}

export const wasm: BackendCandidate = {
  name: 'wasm',
  package: WASM_PACKAGE,
  async load() {
    await activateWasm();
    return { name: 'wasm', package: WASM_PACKAGE, gpu: false, trainingKernels: installWasmTrainingKernels() };
  },
};
