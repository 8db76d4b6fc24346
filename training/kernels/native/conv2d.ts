/**
 * The convolution kernels on oneDNN: Conv2D and _FusedConv2D (bias, ReLU) forward, and both
 * gradients. Only NHWC float32 with a linear or ReLU activation goes native; anything else (NCHW,
 * prelu, leaky ReLU, empty tensors) goes to the kernel this one replaced.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type KernelArgs, type WasmKernelFunc, sizeOf, zerosOutput } from '../wasm-backend.js';
import type { NativeAddon } from './addon.js';
import { heapOf, intoNewOutput, nativeFloats, offsetOf } from './heap.js';

type Conv2DAttrs = tf.Conv2DAttrs & Partial<Pick<tf.FusedConv2DAttrs, 'activation'>>;

/** The addon's 17 shape numbers (src/addon.cc): input, filter, output, stride, dilation, padding. */
function convShape(info: tf.backend_util.Conv2DInfo): number[] {
  const { top, left, bottom, right } = info.padInfo;
  return [
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.filterHeight,
    info.filterWidth,
    info.outChannels,
    info.outHeight,
    info.outWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    top,
    left,
    bottom,
    right,
  ];
}

const channelsLast = (dataFormat: string | undefined) =>
  tf.backend_util.convertConv2DDataFormat((dataFormat ?? 'NHWC') as 'NHWC' | 'NCHW') === 'channelsLast';

const shape4 = (s: readonly number[]) => s as [number, number, number, number];

/** Conv2D and _FusedConv2D (its bias must be one value per output channel). */
export function makeNativeConv2D(addon: NativeAddon, fallback: WasmKernelFunc): WasmKernelFunc {
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { x, filter, bias, preluActivationWeights } = inputs as Record<string, tf.TensorInfo | undefined>;
    const a = attrs as unknown as Conv2DAttrs;
    const activation = a.activation ?? 'linear';
    const supported =
      x &&
      filter &&
      nativeFloats(x, filter) &&
      channelsLast(a.dataFormat) &&
      !preluActivationWeights &&
      (activation === 'linear' || activation === 'relu') &&
      x.shape.length === 4 &&
      (!bias || (nativeFloats(bias) && tf.util.sizeFromShape(bias.shape) === filter.shape[3]));
    if (!supported) return fallback(args);
    const info = tf.backend_util.computeConv2DInfo(
      shape4(x.shape),
      shape4(filter.shape),
      a.strides,
      a.dilations,
      a.pad,
      a.dimRoundingMode,
    );
    // A 'valid' filter larger than the input has no output pixels, which oneDNN refuses to describe.
    if (sizeOf(info.outShape) === 0) return backend.makeOutput(info.outShape, 'float32');
    return intoNewOutput(backend, info.outShape, (out) =>
      addon.convForward(
        heapOf(backend),
        [
          offsetOf(backend, x),
          offsetOf(backend, filter),
          bias ? offsetOf(backend, bias) : -1,
          offsetOf(backend, out),
        ],
        convShape(info),
        activation === 'relu',
      ),
    );
  };
}

export function makeNativeConv2DBackpropInput(addon: NativeAddon, fallback: WasmKernelFunc): WasmKernelFunc {
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const a = attrs as unknown as tf.Conv2DBackpropInputAttrs;
    if (dy.dtype === 'float32' && sizeOf(dy.shape) === 0) return zerosOutput(backend, a.inputShape);
    if (!nativeFloats(dy, filter) || !channelsLast(a.dataFormat) || !a.inputShape.every((d) => d > 0))
      return fallback(args);
    const info = tf.backend_util.computeConv2DInfo(
      shape4(a.inputShape),
      shape4(filter.shape),
      a.strides,
      1,
      a.pad,
      a.dimRoundingMode,
    );
    return intoNewOutput(backend, [...a.inputShape], (out) =>
      addon.convBackwardData(
        heapOf(backend),
        [offsetOf(backend, dy), offsetOf(backend, filter), offsetOf(backend, out)],
        convShape(info),
      ),
    );
  };
}

export function makeNativeConv2DBackpropFilter(addon: NativeAddon, fallback: WasmKernelFunc): WasmKernelFunc {
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    // An empty dy (a 'valid' filter larger than the input) sends nothing back.
    if (dy.dtype === 'float32' && sizeOf(dy.shape) === 0) return zerosOutput(backend, a.filterShape);
    if (!nativeFloats(x, dy) || !channelsLast(a.dataFormat)) return fallback(args);
    const info = tf.backend_util.computeConv2DInfo(
      shape4(x.shape),
      shape4(a.filterShape),
      a.strides,
      1,
      a.pad,
      a.dimRoundingMode,
    );
    return intoNewOutput(backend, [...a.filterShape], (out) =>
      addon.convBackwardWeights(
        heapOf(backend),
        [offsetOf(backend, x), offsetOf(backend, dy), offsetOf(backend, out)],
        convShape(info),
      ),
    );
  };
}
