/**
 * Conv2DBackpropFilter for the wasm backend, which has none (so tfjs-wasm cannot train convnets).
 *
 * The "batch/channel swap": dW[i,j,c,o] = Σ_{n,y,x} xp[n, y·s+i, x·s+j, c] · dy[n,y,x,o] is itself a
 * 'valid' convolution of xp seen as [c, Hp, Wp, n] (channels as batch, batch as channels) with dy
 * seen as a [Ho, Wo, n, o] filter dilated by the stride. That runs on XNNPACK's Conv2D at
 * 16–19 GFLOP/s, against ~1 GFLOP/s for routing through Conv3DBackpropFilterV2 (which is also wrong
 * for strides > 1).
 *
 * Layers with few input values per output pixel (kh·kw·ci ≤ 32: a first layer on 1-channel images)
 * degenerate in that form: a 3×3 output from a filter the size of dy, 1.7 GFLOP/s. For them,
 * dW = patchesᵀ·dy as one GEMM, with the transposed im2col patches [kh·kw·ci, M] built directly.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  type KernelArgs,
  Scratch,
  type WasmBackend,
  type WasmKernelFunc,
  f32,
  sizeOf,
  stockKernel,
  zerosOutput,
} from './wasm-backend.js';

export function makeConv2DBackpropFilter(): WasmKernelFunc {
  const pad = stockKernel(tf.PadV2);
  const transpose = stockKernel(tf.Transpose);
  const conv2d = stockKernel(tf.Conv2D);
  const slice = stockKernel(tf.Slice);
  const matMul = stockKernel(tf.BatchMatMul);
  const reshape = stockKernel(tf.Reshape);
  const run = (
    k: WasmKernelFunc,
    backend: WasmBackend,
    inputs: tf.NamedTensorInfoMap,
    attrs: tf.NamedAttrMap,
  ) => k({ inputs, backend, attrs }) as tf.TensorInfo;

  return ({ inputs, backend, attrs }: KernelArgs) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const {
      strides,
      pad: padAttr,
      dataFormat,
      dimRoundingMode,
      filterShape,
    } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    if (tf.backend_util.convertConv2DDataFormat(dataFormat) !== 'channelsLast') {
      throw new Error(`Conv2DBackpropFilter (gradfleet wasm): only NHWC is supported, got ${dataFormat}`);
    }
    // No output pixels (a 'valid' filter larger than the input): nothing flows back, and XNNPACK would leave
    // the buffer unwritten.
    if (sizeOf(dy.shape) === 0 || sizeOf(x.shape) === 0) return zerosOutput(backend, filterShape);
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filterShape,
      strides,
      1,
      padAttr,
      dimRoundingMode,
    );
    const { top, bottom, left, right } = info.padInfo;
    const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
    const scratch = new Scratch(backend);
    try {
      if (kh * kw * info.inChannels <= SMALL_PATCH) {
        const patches = scratch.keep(transposedPatches(backend, x, info));
        const dy2 = scratch.keep(
          run(reshape, backend, { x: dy }, { shape: [1, patches.shape[2], info.outChannels] }),
        );
        const dw = run(matMul, backend, { a: patches, b: dy2 }, { transposeA: false, transposeB: false });
        dw.shape = [...filterShape];
        return dw;
      }
      const padded =
        top || bottom || left || right
          ? scratch.keep(
              run(
                pad,
                backend,
                { x },
                {
                  paddings: [
                    [0, 0],
                    [top, bottom],
                    [left, right],
                    [0, 0],
                  ],
                  constantValue: 0,
                },
              ),
            )
          : x;
      const xSwapped = scratch.keep(run(transpose, backend, { x: padded }, { perm: [3, 1, 2, 0] }));
      const dySwapped = scratch.keep(run(transpose, backend, { x: dy }, { perm: [1, 2, 0, 3] }));
      let dw = scratch.keep(
        run(
          conv2d,
          backend,
          { x: xSwapped, filter: dySwapped },
          {
            strides: [1, 1],
            pad: 'valid',
            dataFormat: 'NHWC',
            dilations: [sh, sw],
            dimRoundingMode: undefined as unknown as string,
          },
        ),
      );
      // With a stride, the valid output can run past the kernel extent (floor in Ho); only kh×kw is the
      // gradient.
      if (dw.shape[1] !== kh || dw.shape[2] !== kw) {
        dw = scratch.keep(
          run(slice, backend, { x: dw }, { begin: [0, 0, 0, 0], size: [dw.shape[0], kh, kw, dw.shape[3]] }),
        );
      }
      return run(transpose, backend, { x: dw }, { perm: [1, 2, 0, 3] });
    } finally {
      scratch.dispose();
    }
  };
}

const SMALL_PATCH = 32;

/**
 * patchesᵀ[(ky·kw + kx)·ci + c, (n·Ho + oy)·Wo + ox] = x[n, oy·s + ky − top, ox·s + kx − left, c], 0 outside.
 */
function transposedPatches(
  backend: WasmBackend,
  x: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  const m = n * oh * ow;
  const out = backend.makeOutput([1, kh * kw * ci, m], 'float32');
  const dst = f32(backend, out);
  const src = f32(backend, x);
  for (let ky = 0; ky < kh; ky++) {
    for (let kx = 0; kx < kw; kx++) {
      for (let c = 0; c < ci; c++) {
        let at = ((ky * kw + kx) * ci + c) * m;
        for (let b = 0; b < n; b++) {
          for (let oy = 0; oy < oh; oy++) {
            const iy = oy * sh + ky - top;
            const rowOk = iy >= 0 && iy < h;
            const rowBase = (b * h + iy) * w;
            for (let ox = 0; ox < ow; ox++, at++) {
              const ix = ox * sw + kx - left;
              dst[at] = rowOk && ix >= 0 && ix < w ? src[(rowBase + ix) * ci + c] : 0;
            }
          }
        }
      }
    }
  }
  return out;
}
