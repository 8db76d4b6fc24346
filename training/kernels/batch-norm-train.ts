/**
 * Training-mode BatchNorm (batch statistics), optionally fused with the ReLU that follows it in
 * mnist-cnn, as one kernel with one gradient kernel. Autodiff through moments() + batchNorm()
 * makes ~300 small Multiply/Sum/Tile ops per mnist-cnn step; these are two streaming passes each way.
 *
 * Outputs: y, and the batch mean and (biased) variance per channel, which the cluster reduces into
 * the moving statistics. The statistics outputs are not differentiated (they feed only the moving
 * averages, never the loss).
 */
import * as tf from '@tensorflow/tfjs-core';
import { channelMeans, channelsOf } from './channel-means.js';
import {
  type KernelArgs,
  Scratch,
  type WasmBackend,
  type WasmKernelFunc,
  f32,
  stockKernel,
} from './wasm-backend.js';

export const BatchNormTrain = 'GradfleetBatchNormTrain';
export const BatchNormTrainGrad = 'GradfleetBatchNormTrainGrad';

export interface BatchNormTrainAttrs {
  epsilon: number;
  relu: boolean;
}

/**
 * Both kernels are compositions of stock wasm kernels, chosen so that every pass over the data runs
 * in XNNPACK's SIMD code: channel means as average pools (channel-means.ts), broadcasting
 * Sub/Mul/Add at 0.4–1.3 ms per [50176×32]. The stock FusedBatchNorm is scalar (5.8 ms): not used.
 */
function makeOps() {
  const k = {
    sub: stockKernel(tf.Sub),
    mul: stockKernel(tf.Multiply),
    add: stockKernel(tf.Add),
    square: stockKernel(tf.Square),
    relu: stockKernel(tf.Relu),
    step: stockKernel(tf.Step),
  };
  return (backend: WasmBackend) => {
    const scratch = new Scratch(backend);
    const run = (f: WasmKernelFunc, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}) =>
      scratch.keep(f({ inputs, backend, attrs }) as tf.TensorInfo);
    const vector = (values: ArrayLike<number>) => {
      const t = scratch.keep(backend.makeOutput([values.length], 'float32'));
      f32(backend, t).set(values);
      return t;
    };
    return {
      vector,
      channelMeans: (x: tf.TensorInfo) => channelMeans(backend, x),
      sub: (a: tf.TensorInfo, b: tf.TensorInfo) => run(k.sub, { a, b }),
      mul: (a: tf.TensorInfo, b: tf.TensorInfo) => run(k.mul, { a, b }),
      add: (a: tf.TensorInfo, b: tf.TensorInfo) => run(k.add, { a, b }),
      square: (x: tf.TensorInfo) => run(k.square, { x }),
      relu: (x: tf.TensorInfo) => run(k.relu, { x }),
      step: (x: tf.TensorInfo) => run(k.step, { x }, { alpha: 0 }),
      release: (t: tf.TensorInfo) => scratch.release(t),
      disposeIntermediates: () => scratch.dispose(),
    };
  };
}

let opsFactory: ReturnType<typeof makeOps> | undefined;
const opsOf = (backend: WasmBackend) => {
  opsFactory ??= makeOps();
  return opsFactory(backend);
};

export const batchNormTrainWasm: WasmKernelFunc = ({ inputs, backend, attrs }: KernelArgs) => {
  const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
  const { epsilon, relu } = attrs as unknown as BatchNormTrainAttrs;
  const c = channelsOf(x).channels;
  const ops = opsOf(backend);
  try {
    // Two passes (mean, then mean of centred squares) keep the variance accurate in float32.
    const mean = ops.channelMeans(x);
    const centred = ops.sub(x, ops.vector(mean));
    const variance = ops.channelMeans(ops.square(centred));
    const g = f32(backend, gamma);
    const scale = new Float32Array(c);
    for (let ch = 0; ch < c; ch++) scale[ch] = g[ch] / Math.sqrt(variance[ch] + epsilon);
    const normed = ops.add(ops.mul(centred, ops.vector(scale)), beta);
    const y = ops.release(relu ? ops.relu(normed) : normed);
    return [y, ops.release(ops.vector(mean)), ops.release(ops.vector(variance))];
  } finally {
    ops.disposeIntermediates();
  }
};

export const batchNormTrainGradWasm: WasmKernelFunc = ({ inputs, backend, attrs }: KernelArgs) => {
  const { dy, x, y, gamma, mean, variance } = inputs as Record<string, tf.TensorInfo>;
  const { epsilon, relu } = attrs as unknown as BatchNormTrainAttrs;
  const { channels: c, rows } = channelsOf(x);
  const ops = opsOf(backend);
  try {
    // ReLU's gradient is taken where its output is positive, as tfjs's Relu gradient does (step(x)).
    const g = relu ? ops.mul(dy, ops.step(y)) : dy;
    const centred = ops.sub(x, mean);
    const gMean = ops.channelMeans(g);
    const gcMean = ops.channelMeans(ops.mul(g, centred));
    const v = f32(backend, variance).slice();
    const gm = f32(backend, gamma).slice();
    const dGamma = new Float32Array(c);
    const dBeta = new Float32Array(c);
    const k1 = new Float32Array(c); // coefficient of g
    const k2 = new Float32Array(c); // coefficient of (x − μ)
    const k0 = new Float32Array(c); // constant
    for (let ch = 0; ch < c; ch++) {
      const invStd = 1 / Math.sqrt(v[ch] + epsilon);
      dBeta[ch] = gMean[ch] * rows;
      dGamma[ch] = gcMean[ch] * rows * invStd;
      // dx = γ·σ⁻¹·(g − mean(g) − x̂·mean(g·x̂)), with x̂ = (x − μ)·σ⁻¹.
      const a = gm[ch] * invStd;
      k1[ch] = a;
      k2[ch] = -a * invStd * invStd * gcMean[ch];
      k0[ch] = -a * gMean[ch];
    }
    const dx = ops.release(
      ops.add(ops.add(ops.mul(g, ops.vector(k1)), ops.mul(centred, ops.vector(k2))), ops.vector(k0)),
    );
    return [dx, ops.release(ops.vector(dGamma)), ops.release(ops.vector(dBeta))];
  } finally {
    ops.disposeIntermediates();
  }
};

let gradientRegistered = false;

/** The gradient is registered by kernel name, so it serves any backend that has both kernels. */
export function registerBatchNormTrainGradient(): void {
  if (gradientRegistered) return;
  gradientRegistered = true;
  tf.registerGradient({
    kernelName: BatchNormTrain,
    inputsToSave: ['x', 'gamma'],
    outputsToSave: [true, true, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x, gamma, y, mean, variance] = saved;
      const dy = Array.isArray(dys) ? dys[0] : dys;
      // One kernel call yields all three gradients; the thunks hand them out.
      const [dx, dGamma, dBeta] = tf
        .engine()
        .runKernel(BatchNormTrainGrad, { dy, x, y, gamma, mean, variance }, attrs) as tf.Tensor[];
      return { x: () => dx, gamma: () => dGamma, beta: () => dBeta };
    },
  });
}
