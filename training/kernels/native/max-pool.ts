/** MaxPool and MaxPoolGrad in C++ (float32, no dilation; anything else goes to the replaced kernel). */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmKernelFunc } from '../wasm-backend.js';
import type { NativeAddon } from './addon.js';
import { heapOf, intoNewOutput, nativeFloats, offsetOf } from './heap.js';

/** The addon's 12 pool shape numbers (src/addon.cc). */
function poolShape(info: tf.backend_util.Conv2DInfo): number[] {
  return [
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.filterHeight,
    info.filterWidth,
    info.outHeight,
    info.outWidth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.top,
    info.padInfo.left,
  ];
}

function poolInfo(x: tf.TensorInfo, attrs: tf.MaxPoolAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
}

export function makeNativeMaxPool(addon: NativeAddon, fallback: WasmKernelFunc): WasmKernelFunc {
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { x } = inputs as { x: tf.TensorInfo };
    if (!nativeFloats(x) || x.shape.length !== 4) return fallback(args);
    const info = poolInfo(x, attrs as unknown as tf.MaxPoolAttrs);
    if (!info.outShape.every((d) => d > 0)) return fallback(args);
    return intoNewOutput(backend, info.outShape, (out) =>
      addon.maxPoolForward(heapOf(backend), [offsetOf(backend, x), offsetOf(backend, out)], poolShape(info)),
    );
  };
}

export function makeNativeMaxPoolGrad(addon: NativeAddon, fallback: WasmKernelFunc): WasmKernelFunc {
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    if (!nativeFloats(dy, input) || input.shape.length !== 4) return fallback(args);
    const info = poolInfo(input, attrs as unknown as tf.MaxPoolGradAttrs);
    return intoNewOutput(backend, [...input.shape], (out) =>
      addon.maxPoolBackward(
        heapOf(backend),
        [offsetOf(backend, input), offsetOf(backend, dy), offsetOf(backend, out)],
        poolShape(info),
      ),
    );
  };
}
