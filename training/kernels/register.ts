/**
 * Installs gradfleet's training kernels on the wasm backend: the wasm set (TypeScript over the
 * stock kernels), or the native set (the wasm set with the hottest kernels on oneDNN). Must run
 * after `await tf.setBackend('wasm')`: the stock kernels' setup (their cwrap bindings) runs at
 * backend init. Switching sets in one process puts back the stock kernels the new set leaves alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import { makeBatchMatMul } from './batch-matmul.js';
import {
  BatchNormTrain,
  BatchNormTrainGrad,
  batchNormTrainGradWasm,
  batchNormTrainWasm,
  registerBatchNormTrainGradient,
} from './batch-norm-train.js';
import { makeConv2DBackpropFilter } from './conv2d-backprop-filter.js';
import { makeConv2DBackpropInput } from './conv2d-backprop-input.js';
import { makeIdentity } from './identity.js';
import { makeMaxPoolGrad } from './max-pool-grad.js';
import type { NativeAddon } from './native/addon.js';
import { NATIVE_KERNELS, nativeKernels } from './native/register.js';
import { makeSum } from './sum.js';
import { makeTile } from './tile.js';
import {
  type WasmKernelFunc,
  assertWasmBackend,
  captureStockKernels,
  stockKernel,
  stockKernelConfig,
} from './wasm-backend.js';

/** Kernel name → factory. Factories run once, after the stock kernels they wrap are captured. */
const wasmOverrides: Record<string, () => WasmKernelFunc> = {
  [tf.Conv2DBackpropFilter]: makeConv2DBackpropFilter,
  [tf.Conv2DBackpropInput]: makeConv2DBackpropInput,
  [tf.BatchMatMul]: makeBatchMatMul,
  [tf.Tile]: makeTile,
  [tf.Sum]: makeSum,
  [tf.MaxPoolGrad]: makeMaxPoolGrad,
  [tf.Identity]: makeIdentity,
  [BatchNormTrain]: () => batchNormTrainWasm,
  [BatchNormTrainGrad]: () => batchNormTrainGradWasm,
};

type KernelSetName = 'wasm' | 'native';

let active: { set: KernelSetName; names: readonly string[] } | undefined;
let wasmSet: Map<string, WasmKernelFunc> | undefined;
let nativeSet: Map<string, WasmKernelFunc> | undefined;

function prepare(): Map<string, WasmKernelFunc> {
  if (tf.getBackend() !== 'wasm')
    throw new Error(`gradfleet training kernels: active backend is ${tf.getBackend()}, not wasm`);
  assertWasmBackend(tf.backend());
  // Every kernel either set replaces is recorded before the first replacement.
  captureStockKernels([...Object.keys(wasmOverrides), ...NATIVE_KERNELS]);
  wasmSet ??= new Map(Object.entries(wasmOverrides).map(([name, make]) => [name, make()]));
  return wasmSet;
}

function install(set: KernelSetName, funcs: Map<string, WasmKernelFunc>): readonly string[] {
  if (active?.set === set) return active.names;
  for (const name of active?.names ?? []) {
    const stock = stockKernelConfig(name);
    if (funcs.has(name) || !stock) continue;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(stock);
  }
  for (const [name, kernelFunc] of funcs) {
    if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({
      kernelName: name,
      backendName: 'wasm',
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
  }
  registerBatchNormTrainGradient();
  active = { set, names: [...funcs.keys()] };
  return active.names;
}

export function installWasmTrainingKernels(): readonly string[] {
  return install('wasm', prepare());
}

/** The native set; returns the kernels that run on oneDNN (the rest of the wasm set stays). */
export function installNativeTrainingKernels(addon: NativeAddon): readonly string[] {
  const base = prepare();
  nativeSet ??= new Map([...base, ...nativeKernels(addon, (name) => base.get(name) ?? stockKernel(name))]);
  install('native', nativeSet);
  return NATIVE_KERNELS;
}

/** Whether the fused training-mode BatchNorm kernel exists for the active backend. */
export function hasFusedBatchNormTrain(): boolean {
  return tf.getKernel(BatchNormTrain, tf.getBackend()) !== undefined;
}
