/**
 * BatchMatMul with transposed operands. tfjs-wasm hands XNNPACK only the untransposed case; with a
 * transpose flag it runs a scalar loop (1.3–2.3 GFLOP/s), and the dense-layer gradients of a
 * training step always carry one. Either transpose the flagged operands first, or compute
 * Cᵀ = op(B)ᵀ·op(A)ᵀ and transpose the (often small) output: whichever moves fewer elements.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  type KernelArgs,
  Scratch,
  type WasmBackend,
  type WasmKernelFunc,
  sizeOf,
  stockKernel,
} from './wasm-backend.js';

export function makeBatchMatMul(): WasmKernelFunc {
  const stock = stockKernel(tf.BatchMatMul);
  const transpose = stockKernel(tf.Transpose);
  const swapLastTwo = (backend: WasmBackend, x: tf.TensorInfo): tf.TensorInfo => {
    const perm = x.shape.map((_, i) => i);
    const r = perm.length;
    [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
    return transpose({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
  };

  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = attrs as unknown as tf.BatchMatMulAttrs;
    if (!transposeA && !transposeB) return stock(args);
    const untransposed = (x: tf.TensorInfo, flag: boolean) => (flag ? sizeOf(x.shape) : 0);
    const outSize =
      sizeOf(a.shape.slice(0, -2)) *
      a.shape[a.shape.length - (transposeA ? 1 : 2)] *
      b.shape[b.shape.length - (transposeB ? 2 : 1)];
    const costDirect = untransposed(a, transposeA) + untransposed(b, transposeB);
    const costSwapped = untransposed(a, !transposeA) + untransposed(b, !transposeB) + outSize;

    const scratch = new Scratch(backend);
    try {
      if (costDirect <= costSwapped) {
        const a2 = transposeA ? scratch.keep(swapLastTwo(backend, a)) : a;
        const b2 = transposeB ? scratch.keep(swapLastTwo(backend, b)) : b;
        return stock({ inputs: { a: a2, b: b2 }, backend, attrs: { transposeA: false, transposeB: false } });
      }
      // op(B)ᵀ is B itself when transposeB is set, and likewise for A.
      const bt = transposeB ? b : scratch.keep(swapLastTwo(backend, b));
      const at = transposeA ? a : scratch.keep(swapLastTwo(backend, a));
      const ct = scratch.keep(
        stock({
          inputs: { a: bt, b: at },
          backend,
          attrs: { transposeA: false, transposeB: false },
        }) as tf.TensorInfo,
      );
      return swapLastTwo(backend, ct);
    } finally {
      scratch.dispose();
    }
  };
}
