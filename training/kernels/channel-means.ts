/**
 * Per-channel means of a [..., C] tensor on the wasm backend: one XNNPACK average pool with a window
 * over all rows. Measured on [50176×32]: 0.5 ms, against 6.4 ms for a ones·X GEMM (XNNPACK repacks X
 * as weights), ~10 ms for the stock Sum/Mean (they transpose first) and ~4 ms for a plain-JS pass.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type WasmBackend, disposeAll, f32, stockKernel } from './wasm-backend.js';

export function channelsOf(x: tf.TensorInfo): { channels: number; rows: number } {
  const channels = x.shape[x.shape.length - 1];
  return { channels, rows: tf.util.sizeFromShape(x.shape) / channels };
}

let kernels: { reshape: ReturnType<typeof stockKernel>; avgPool: ReturnType<typeof stockKernel> } | undefined;

export function channelMeans(backend: WasmBackend, x: tf.TensorInfo): Float64Array {
  kernels ??= { reshape: stockKernel(tf.Reshape), avgPool: stockKernel(tf.AvgPool) };
  const { channels, rows } = channelsOf(x);
  const column = kernels.reshape({
    inputs: { x },
    backend,
    attrs: { shape: [1, rows, 1, channels] },
  }) as tf.TensorInfo;
  const pooled = kernels.avgPool({
    inputs: { x: column },
    backend,
    attrs: { filterSize: [rows, 1], strides: 1, pad: 'valid' },
  }) as tf.TensorInfo;
  try {
    return Float64Array.from(f32(backend, pooled));
  } finally {
    disposeAll(backend, column, pooled);
  }
}
