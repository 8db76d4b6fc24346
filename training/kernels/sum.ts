/**
 * Sum over leading axes (bias gradients reduce [N,H,W,C] over N,H,W). The stock kernel only reduces
 * innermost axes, so it transposes the whole tensor first; here it is a channel mean (one XNNPACK
 * average pool) times the row count.
 */
import * as tf from '@tensorflow/tfjs-core';
import { channelMeans } from './channel-means.js';
import { type KernelArgs, type WasmKernelFunc, f32, sizeOf, stockKernel } from './wasm-backend.js';

export function makeSum(): WasmKernelFunc {
  const stock = stockKernel(tf.Sum);
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { x } = inputs as { x: tf.TensorInfo };
    const { axis, keepDims } = attrs as unknown as tf.SumAttrs;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    const leading = axes.length > 0 && axes.every((a, i) => a === i) && axes.length < x.shape.length;
    if (!leading || x.dtype !== 'float32') return stock(args);

    const inner = sizeOf(x.shape.slice(axes.length));
    const outShape = keepDims ? x.shape.map((d, i) => (i < axes.length ? 1 : d)) : x.shape.slice(axes.length);
    const rows = sizeOf(x.shape) / inner;
    const flat = { ...x, shape: [rows, inner] };
    const means = channelMeans(backend, flat);
    const out = backend.makeOutput(outShape, 'float32');
    const sums = f32(backend, out);
    for (let i = 0; i < inner; i++) sums[i] = means[i] * rows;
    return out;
  };
}
