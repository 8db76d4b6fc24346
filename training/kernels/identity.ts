/**
 * Identity (tf.clone) sharing the input's buffer, as the cpu backend and wasm's own Reshape do,
 * instead of copying it. The engine clones every tensor a gradient saves: on mnist-cnn that is
 * ~30 copies of activations per step (12 ms of ~170 on native). Sharing is safe because no kernel
 * writes into its inputs; the ref count frees the buffer when the last holder lets go.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type KernelArgs, type WasmKernelFunc, stockKernel } from './wasm-backend.js';

export function makeIdentity(): WasmKernelFunc {
  const stock = stockKernel(tf.Identity);
  return (args: KernelArgs) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return stock(args);
    args.backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };
}
