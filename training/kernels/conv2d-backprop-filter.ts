/**
 * Conv2DBackpropFilter for the wasm backend, which has none (so tfjs-wasm cannot train convnets).
 *
 * The "batch/channel swap": dW[i,j,c,o] = Σ_{n,y,x} xp[n, y·s+i, x·s+j, c] · dy[n,y,x,o] is itself a
 * 'valid' convolution of xp seen as [c, Hp, Wp, n] (channels as batch, batch as channels) with dy
 * seen as a [Ho, Wo, n, o] filter dilated by the stride. That runs on XNNPACK's Conv2D at
 * 16–19 GFLOP/s, against ~1 GFLOP/s for routing through Conv3DBackpropFilterV2 (which is also wrong
 * for strides > 1).
 */
import * as tf from '@tensorflow/tfjs-core';
import { type KernelArgs, type WasmBackend, type WasmKernelFunc, disposeAll, stockKernel } from './wasm-backend.js';

export function makeConv2DBackpropFilter(): WasmKernelFunc {
  const pad = stockKernel(tf.PadV2);
  const transpose = stockKernel(tf.Transpose);
  const conv2d = stockKernel(tf.Conv2D);
  const slice = stockKernel(tf.Slice);
  const run = (k: WasmKernelFunc, backend: WasmBackend, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap) =>
    k({ inputs, backend, attrs }) as tf.TensorInfo;

  return ({ inputs, backend, attrs }: KernelArgs) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const { strides, pad: padAttr, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    if (tf.backend_util.convertConv2DDataFormat(dataFormat) !== 'channelsLast') {
      throw new Error(`Conv2DBackpropFilter (gradfleet wasm): only NHWC is supported, got ${dataFormat}`);
    }
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], filterShape, strides, 1, padAttr, dimRoundingMode);
    const { top, bottom, left, right } = info.padInfo;
    const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;

    const intermediates: tf.TensorInfo[] = [];
    const keep = (t: tf.TensorInfo) => (intermediates.push(t), t);
    try {
      const padded = top || bottom || left || right
        ? keep(run(pad, backend, { x }, { paddings: [[0, 0], [top, bottom], [left, right], [0, 0]], constantValue: 0 }))
        : x;
      const xSwapped = keep(run(transpose, backend, { x: padded }, { perm: [3, 1, 2, 0] }));
      const dySwapped = keep(run(transpose, backend, { x: dy }, { perm: [1, 2, 0, 3] }));
      let dw = keep(run(conv2d, backend, { x: xSwapped, filter: dySwapped }, {
        strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [sh, sw], dimRoundingMode: undefined as unknown as string,
      }));
      // With a stride, the valid output can run past the kernel extent (floor in Ho); only kh×kw is the gradient.
      if (dw.shape[1] !== kh || dw.shape[2] !== kw) {
        dw = keep(run(slice, backend, { x: dw }, { begin: [0, 0, 0, 0], size: [dw.shape[0], kh, kw, dw.shape[3]] }));
      }
      return run(transpose, backend, { x: dw }, { perm: [1, 2, 0, 3] });
    } finally {
      disposeAll(backend, ...intermediates);
    }
  };
}
