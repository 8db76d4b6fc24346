/**
 * gradfleet's fused training BatchNorm(+ReLU) kernels (see ../batch-norm-train.ts) in C++, and
 * tf.batchNorm's inference kernel (wasm's took 40% of evaluating mnist-cnn).
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { BatchNormTrainAttrs } from '../batch-norm-train.js';
import { channelsOf } from '../channel-means.js';
import type { KernelArgs, WasmKernelFunc } from '../wasm-backend.js';
import type { NativeAddon } from './addon.js';
import { heapOf, intoNewOutput, intoNewOutputs, nativeFloats, offsetOf } from './heap.js';

export function makeNativeBatchNormTrain(addon: NativeAddon): WasmKernelFunc {
  return ({ inputs, backend, attrs }: KernelArgs) => {
    const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo>;
    const { epsilon, relu } = attrs as unknown as BatchNormTrainAttrs;
    const { channels, rows } = channelsOf(x);
    return intoNewOutputs(backend, [[...x.shape], [channels], [channels]], (outs) =>
      addon.batchNormForward(
        heapOf(backend),
        [x, gamma, beta, ...outs].map((t) => offsetOf(backend, t)),
        [rows, channels, epsilon],
        relu,
      ),
    );
  };
}

export function makeNativeBatchNormTrainGrad(addon: NativeAddon): WasmKernelFunc {
  return ({ inputs, backend, attrs }: KernelArgs) => {
    const { dy, x, y, gamma, mean, variance } = inputs as Record<string, tf.TensorInfo>;
    const { epsilon, relu } = attrs as unknown as BatchNormTrainAttrs;
    const { channels, rows } = channelsOf(x);
    return intoNewOutputs(backend, [[...x.shape], [channels], [channels]], (outs) =>
      addon.batchNormBackward(
        heapOf(backend),
        [dy, x, y, gamma, mean, variance, ...outs].map((t) => offsetOf(backend, t)),
        [rows, channels, epsilon],
        relu,
      ),
    );
  };
}

/** FusedBatchNorm with per-channel mean, variance, offset and scale (anything else: the replaced kernel). */
export function makeNativeBatchNormInference(addon: NativeAddon, fallback: WasmKernelFunc): WasmKernelFunc {
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { x, mean, variance, offset, scale } = inputs as Record<string, tf.TensorInfo | undefined>;
    const perChannel = [mean, variance, offset, scale];
    if (!x || !nativeFloats(x) || perChannel.some((t) => !t || !nativeFloats(t) || t.shape.length !== 1))
      return fallback(args);
    const { channels, rows } = channelsOf(x);
    if (perChannel.some((t) => t!.shape[0] !== channels)) return fallback(args);
    const { varianceEpsilon } = attrs as unknown as tf.FusedBatchNormAttrs;
    return intoNewOutput(backend, [...x.shape], (out) =>
      addon.batchNormInference(
        heapOf(backend),
        [x, ...perChannel, out].map((t) => offsetOf(backend, t!)),
        [rows, channels, varianceEpsilon],
        false,
      ),
    );
  };
}
