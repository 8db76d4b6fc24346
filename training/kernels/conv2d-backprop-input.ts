/**
 * A fast Conv2DBackpropInput for the wasm backend. The stock kernel is a scalar loop (~2.5 GFLOP/s).
 * For stride 1 the input gradient is a plain convolution of dy with the filter rotated by 180° and
 * its channel axes swapped, so it runs on XNNPACK's Conv2D (27–28 GFLOP/s). Strided or dilated
 * cases keep the stock kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type KernelArgs, type WasmKernelFunc, disposeAll, f32, stockKernel } from './wasm-backend.js';

export function makeConv2DBackpropInput(): WasmKernelFunc {
  const stock = stockKernel(tf.Conv2DBackpropInput);
  const conv2d = stockKernel(tf.Conv2D);

  return (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } =
      attrs as unknown as tf.Conv2DBackpropInputAttrs;
    const info = tf.backend_util.computeConv2DInfo(
      inputShape,
      filter.shape as [number, number, number, number],
      strides,
      1,
      pad,
      dimRoundingMode,
      false,
      tf.backend_util.convertConv2DDataFormat(dataFormat),
    );
    const { top, bottom, left, right } = info.padInfo;
    const { filterHeight: kh, filterWidth: kw, inChannels: ci, outChannels: co } = info;
    const fullPad = [kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right];
    if (
      info.dataFormat !== 'channelsLast' ||
      info.strideHeight !== 1 ||
      info.strideWidth !== 1 ||
      fullPad.some((p) => p < 0)
    ) {
      return stock(args);
    }

    // rotated[i,j,o,c] = filter[kh-1-i, kw-1-j, c, o]
    const rotated = backend.makeOutput([kh, kw, co, ci], 'float32');
    const src = f32(backend, filter);
    const dst = f32(backend, rotated);
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const srcBase = ((kh - 1 - i) * kw + (kw - 1 - j)) * ci * co;
        const dstBase = (i * kw + j) * co * ci;
        for (let c = 0; c < ci; c++) {
          for (let o = 0; o < co; o++) dst[dstBase + o * ci + c] = src[srcBase + c * co + o];
        }
      }
    }
    try {
      return conv2d({
        inputs: { x: dy, filter: rotated },
        backend,
        attrs: {
          strides: [1, 1],
          dilations: [1, 1],
          dataFormat: 'NHWC',
          dimRoundingMode: undefined as unknown as string,
          pad: [
            [0, 0],
            [fullPad[0], fullPad[1]],
            [fullPad[2], fullPad[3]],
            [0, 0],
          ],
        },
      });
    } finally {
      disposeAll(backend, rotated);
    }
  };
}
