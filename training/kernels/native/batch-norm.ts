/** gradfleet's fused training BatchNorm(+ReLU) kernels (see ../batch-norm-train.ts) in C++. */
import type * as tf from '@tensorflow/tfjs-core';
import type { BatchNormTrainAttrs } from '../batch-norm-train.js';
import { channelsOf } from '../channel-means.js';
import type { KernelArgs, WasmKernelFunc } from '../wasm-backend.js';
import type { NativeAddon } from './addon.js';
import { heapOf, intoNewOutputs, offsetOf } from './heap.js';

export function makeNativeBatchNormTrain(addon: NativeAddon): WasmKernelFunc {
  return ({ inputs, backend, attrs }: KernelArgs) => {
    const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo>;
    const { epsilon, relu } = attrs as unknown as BatchNormTrainAttrs;
    const { channels, rows } = channelsOf(x);
    return intoNewOutputs(backend, [[...x.shape], [channels], [channels]], (outs) =>
      addon.batchNormForward(heapOf(backend), [x, gamma, beta, ...outs].map((t) => offsetOf(backend, t)), [rows, channels, epsilon], relu));
  };
}

export function makeNativeBatchNormTrainGrad(addon: NativeAddon): WasmKernelFunc {
  return ({ inputs, backend, attrs }: KernelArgs) => {
    const { dy, x, y, gamma, mean, variance } = inputs as Record<string, tf.TensorInfo>;
    const { epsilon, relu } = attrs as unknown as BatchNormTrainAttrs;
    const { channels, rows } = channelsOf(x);
    return intoNewOutputs(backend, [[...x.shape], [channels], [channels]], (outs) =>
      addon.batchNormBackward(heapOf(backend), [dy, x, y, gamma, mean, variance, ...outs].map((t) => offsetOf(backend, t)), [rows, channels, epsilon], relu));
  };
}
