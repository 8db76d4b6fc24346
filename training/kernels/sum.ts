/**
 * Sum over leading axes (bias and BatchNorm gradients reduce [N,H,W,C] over N,H,W). The stock
 * kernel only reduces innermost axes, so it transposes the whole tensor first; here it is one
 * streaming pass with float64 accumulators per output element.
 */
import * as tf from '@tensorflow/tfjs-core';
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

    const outer = sizeOf(x.shape.slice(0, axes.length));
    const inner = sizeOf(x.shape.slice(axes.length));
    const outShape = keepDims ? x.shape.map((d, i) => (i < axes.length ? 1 : d)) : x.shape.slice(axes.length);
    const out = backend.makeOutput(outShape, 'float32');
    const src = f32(backend, x);
    const acc = new Float64Array(inner);
    for (let o = 0, base = 0; o < outer; o++, base += inner) {
      for (let i = 0; i < inner; i++) acc[i] += src[base + i];
    }
    f32(backend, out).set(acc);
    return out;
  };
}
