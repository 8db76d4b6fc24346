/**
 * The kernels the oneDNN addon replaces on the wasm backend, each falling back to the kernel it
 * replaced for the cases it does not take. Which ones: the largest items of a training step in
 * `bench compute --profile` (convolutions and their gradients, the matmuls, training BatchNorm, max pooling),
 * and
 * inference BatchNorm, the largest item of evaluating.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BatchNormTrain, BatchNormTrainGrad } from '../batch-norm-train.js';
import type { WasmKernelFunc } from '../wasm-backend.js';
import type { NativeAddon } from './addon.js';
import {
  makeNativeBatchNormInference,
  makeNativeBatchNormTrain,
  makeNativeBatchNormTrainGrad,
} from './batch-norm.js';
import { makeNativeConv2D, makeNativeConv2DBackpropFilter, makeNativeConv2DBackpropInput } from './conv2d.js';
import { makeNativeMatMul } from './matmul.js';
import { makeNativeMaxPool, makeNativeMaxPoolGrad } from './max-pool.js';

type Factory = (addon: NativeAddon, fallback: WasmKernelFunc) => WasmKernelFunc;

const factories: Record<string, Factory> = {
  [tf.Conv2D]: makeNativeConv2D,
  [tf.FusedConv2D]: makeNativeConv2D,
  [tf.Conv2DBackpropInput]: makeNativeConv2DBackpropInput,
  [tf.Conv2DBackpropFilter]: makeNativeConv2DBackpropFilter,
  [tf.BatchMatMul]: makeNativeMatMul,
  [tf._FusedMatMul]: makeNativeMatMul,
  [tf.MaxPool]: makeNativeMaxPool,
  [tf.MaxPoolGrad]: makeNativeMaxPoolGrad,
  [BatchNormTrain]: makeNativeBatchNormTrain,
  [BatchNormTrainGrad]: makeNativeBatchNormTrainGrad,
  [tf.FusedBatchNorm]: makeNativeBatchNormInference,
};

export const NATIVE_KERNELS: readonly string[] = Object.keys(factories);

/** Kernel name → native kernel; `replaced(name)` is what each falls back to. */
export function nativeKernels(
  addon: NativeAddon,
  replaced: (name: string) => WasmKernelFunc,
): Map<string, WasmKernelFunc> {
  return new Map(NATIVE_KERNELS.map((name) => [name, factories[name](addon, replaced(name))]));
}
