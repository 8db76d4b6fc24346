/**
 * BatchMatMul and _FusedMatMul (bias, ReLU) on oneDNN's matmul. Transpose flags become strides, so
 * the dense layers' gradients (xᵀ·dy, dy·Wᵀ) cost no transposed copy. Batch axes must match or be
 * all 1 on one side; other broadcasts, prelu and leaky ReLU go to the kernel this one replaced.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmKernelFunc } from '../wasm-backend.js';
import type { NativeAddon } from './addon.js';
import { heapOf, intoNewOutput, nativeFloats, offsetOf } from './heap.js';

type MatMulAttrs = tf.BatchMatMulAttrs & Partial<Pick<tf._FusedMatMulAttrs, 'activation'>>;

export function makeNativeMatMul(addon: NativeAddon, fallback: WasmKernelFunc): WasmKernelFunc {
  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { a, b, bias, preluActivationWeights } = inputs as Record<string, tf.TensorInfo | undefined>;
    const { transposeA, transposeB, activation = 'linear' } = attrs as unknown as MatMulAttrs;
    if (
      !a ||
      !b ||
      !nativeFloats(a, b) ||
      a.shape.length < 2 ||
      b.shape.length < 2 ||
      preluActivationWeights ||
      (activation !== 'linear' && activation !== 'relu')
    )
      return fallback(args);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const [m, k] = transposeA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
    const [kb, n] = transposeB ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
    const batchShapeA = a.shape.slice(0, -2);
    const batchShapeB = b.shape.slice(0, -2);
    const batchA = tf.util.sizeFromShape(batchShapeA);
    const batchB = tf.util.sizeFromShape(batchShapeB);
    const sameBatch = tf.util.arraysEqual(batchShapeA, batchShapeB);
    if (
      k !== kb ||
      !(sameBatch || batchA === 1 || batchB === 1) ||
      (bias &&
        !(
          nativeFloats(bias) &&
          tf.util.sizeFromShape(bias.shape) === n &&
          bias.shape[bias.shape.length - 1] === n
        ))
    ) {
      return fallback(args);
    }
    const batchShape = tf.backend_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
    return intoNewOutput(backend, [...batchShape, m, n], (out) =>
      addon.matMul(
        heapOf(backend),
        [
          offsetOf(backend, a),
          offsetOf(backend, b),
          bias ? offsetOf(backend, bias) : -1,
          offsetOf(backend, out),
        ],
        [batchA, batchB, m, k, n],
        [Number(transposeA), Number(transposeB), Number(activation === 'relu')],
      ),
    );
  };
}
