/**
 * Installs gradfleet's training kernels on the wasm backend. Must run after
 * `await tf.setBackend('wasm')`: the stock kernels' setup (their cwrap bindings) runs at backend
 * init, and the overrides capture the stock kernel functions to fall back on.
 */
import * as tf from '@tensorflow/tfjs-core';
import { makeBatchMatMul } from './batch-matmul.js';
import {
  BatchNormTrain, BatchNormTrainGrad, batchNormTrainGradWasm, batchNormTrainWasm, registerBatchNormTrainGradient,
} from './batch-norm-train.js';
import { makeConv2DBackpropFilter } from './conv2d-backprop-filter.js';
import { makeConv2DBackpropInput } from './conv2d-backprop-input.js';
import { makeMaxPoolGrad } from './max-pool-grad.js';
import { makeSum } from './sum.js';
import { makeTile } from './tile.js';
import { type WasmKernelFunc, assertWasmBackend } from './wasm-backend.js';

/** Kernel name → factory. Factories run once, after the stock kernels they wrap are captured. */
const overrides: Record<string, () => WasmKernelFunc> = {
  [tf.Conv2DBackpropFilter]: makeConv2DBackpropFilter,
  [tf.Conv2DBackpropInput]: makeConv2DBackpropInput,
  [tf.BatchMatMul]: makeBatchMatMul,
  [tf.Tile]: makeTile,
  [tf.Sum]: makeSum,
  [tf.MaxPoolGrad]: makeMaxPoolGrad,
  [BatchNormTrain]: () => batchNormTrainWasm,
  [BatchNormTrainGrad]: () => batchNormTrainGradWasm,
};

let installed = false;

export function installWasmTrainingKernels(): readonly string[] {
  if (tf.getBackend() !== 'wasm') throw new Error(`installWasmTrainingKernels: active backend is ${tf.getBackend()}, not wasm`);
  assertWasmBackend(tf.backend());
  if (installed) return Object.keys(overrides);
  // Build every override first (each captures the stock kernels it falls back to), then swap.
  const funcs = Object.entries(overrides).map(([name, make]) => [name, make()] as const);
  for (const [name, kernelFunc] of funcs) {
    if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
  registerBatchNormTrainGradient();
  installed = true;
  return Object.keys(overrides);
}

/** Whether the fused training-mode BatchNorm kernel exists for the active backend. */
export function hasFusedBatchNormTrain(): boolean {
  return tf.getKernel(BatchNormTrain, tf.getBackend()) !== undefined;
}
