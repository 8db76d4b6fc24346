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
import { type KernelArgs, type WasmBackend, type WasmKernelFunc, disposeAll, f32, stockKernel } from './wasm-backend.js';

export const BatchNormTrain = 'GradfleetBatchNormTrain';
export const BatchNormTrainGrad = 'GradfleetBatchNormTrainGrad';

export interface BatchNormTrainAttrs {
  epsilon: number;
  relu: boolean;
}

function channelsOf(x: tf.TensorInfo): { channels: number; rows: number } {
  const channels = x.shape[x.shape.length - 1];
  return { channels, rows: tf.util.sizeFromShape(x.shape) / channels };
}

/**
 * Both kernels are compositions of stock wasm kernels, chosen so that every pass over the data runs
 * in XNNPACK's SIMD code: per-channel sums are ones[1×M]·X[M×C] GEMMs, elementwise work is
 * broadcasting Sub/Mul/Add. A plain-JS pass costs 2–5 ns per element; these cost a fraction of that.
 */
function makeOps() {
  const k = {
    matMul: stockKernel(tf.BatchMatMul), reshape: stockKernel(tf.Reshape), fill: stockKernel(tf.Fill),
    sub: stockKernel(tf.Sub), mul: stockKernel(tf.Multiply), add: stockKernel(tf.Add), square: stockKernel(tf.Square),
    relu: stockKernel(tf.Relu), step: stockKernel(tf.Step), batchNorm: stockKernel(tf.FusedBatchNorm),
  };
  return (backend: WasmBackend) => {
    const made: tf.TensorInfo[] = [];
    const keep = (t: tf.TensorInfo | tf.TensorInfo[]) => {
      const info = t as tf.TensorInfo;
      made.push(info);
      return info;
    };
    const run = (f: WasmKernelFunc, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}) => keep(f({ inputs, backend, attrs }));
    const vector = (values: ArrayLike<number>) => {
      const t = keep(backend.makeOutput([values.length], 'float32'));
      f32(backend, t).set(values);
      return t;
    };
    const ops = {
      /** Per-channel sums of a [..., C] tensor, as float64. */
      channelSums(x: tf.TensorInfo, ones: tf.TensorInfo): Float64Array {
        const { channels, rows } = channelsOf(x);
        const x2 = run(k.reshape, { x }, { shape: [rows, channels] });
        return Float64Array.from(f32(backend, run(k.matMul, { a: ones, b: x2 }, { transposeA: false, transposeB: false })));
      },
      ones: (rows: number) => run(k.fill, {}, { shape: [1, rows], value: 1, dtype: 'float32' }),
      vector,
      sub: (a: tf.TensorInfo, b: tf.TensorInfo) => run(k.sub, { a, b }),
      mul: (a: tf.TensorInfo, b: tf.TensorInfo) => run(k.mul, { a, b }),
      add: (a: tf.TensorInfo, b: tf.TensorInfo) => run(k.add, { a, b }),
      square: (x: tf.TensorInfo) => run(k.square, { x }),
      relu: (x: tf.TensorInfo) => run(k.relu, { x }),
      step: (x: tf.TensorInfo) => run(k.step, { x }, { alpha: 0 }),
      /** x·scale + offset per channel, one pass (FusedBatchNorm with mean 0 and variance 1 − ε). */
      affine: (x: tf.TensorInfo, scale: ArrayLike<number>, offset: ArrayLike<number>) => {
        const c = scale.length;
        return run(k.batchNorm, { x, mean: vector(new Float32Array(c)), variance: vector(new Float32Array(c).fill(1 - AFFINE_EPSILON)),
          scale: vector(scale), offset: vector(offset) }, { varianceEpsilon: AFFINE_EPSILON });
      },
      /** Hands `t` to the caller: it will not be disposed with the intermediates. */
      release(t: tf.TensorInfo): tf.TensorInfo {
        made.splice(made.indexOf(t), 1);
        return t;
      },
      disposeIntermediates: () => disposeAll(backend, ...made),
    };
    return ops;
  };
}

/** With variance 1 − ε, FusedBatchNorm's 1/√(var + ε) is exactly 1. */
const AFFINE_EPSILON = 0.5;

let opsFor: ReturnType<typeof makeOps> | undefined;
const opsOf = (backend: WasmBackend) => (opsFor ??= makeOps())(backend);

export const batchNormTrainWasm: WasmKernelFunc = ({ inputs, backend, attrs }: KernelArgs) => {
  const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
  const { epsilon, relu } = attrs as unknown as BatchNormTrainAttrs;
  const { channels: c, rows } = channelsOf(x);
  const ops = opsOf(backend);
  try {
    const ones = ops.ones(rows);
    // Two passes (mean, then centred squares) keep the variance accurate in float32 sums.
    const mean = ops.channelSums(x, ones).map((s) => s / rows);
    const centred = ops.sub(x, ops.vector(mean));
    const variance = ops.channelSums(ops.square(centred), ones).map((s) => s / rows);
    const g = f32(backend, gamma);
    const b = f32(backend, beta);
    const scale = new Float64Array(c);
    for (let ch = 0; ch < c; ch++) scale[ch] = g[ch] / Math.sqrt(variance[ch] + epsilon);
    const normed = ops.affine(centred, scale, b.slice());
    const y = ops.release(relu ? ops.relu(normed) : normed);
    const meanOut = ops.release(ops.vector(mean));
    const varOut = ops.release(ops.vector(variance));
    return [y, meanOut, varOut];
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
    const ones = ops.ones(rows);
    // ReLU's gradient is taken where its output is positive, as tfjs's Relu gradient does (step(x)).
    const g = relu ? ops.mul(dy, ops.step(y)) : dy;
    const gSum = ops.channelSums(g, ones);
    const gxSum = ops.channelSums(ops.mul(g, x), ones);
    const m = f32(backend, mean).slice();
    const v = f32(backend, variance).slice();
    const gm = f32(backend, gamma).slice();
    const dGamma = new Float32Array(c);
    const k1 = new Float32Array(c); // coefficient of g
    const k2 = new Float32Array(c); // coefficient of x
    const k0 = new Float32Array(c); // constant
    for (let ch = 0; ch < c; ch++) {
      const invStd = 1 / Math.sqrt(v[ch] + epsilon);
      const dg = (gxSum[ch] - m[ch] * gSum[ch]) * invStd;
      dGamma[ch] = dg;
      // dx = γ·σ⁻¹·(g − Σg/M − x̂·dγ/M), with x̂ = (x − μ)·σ⁻¹, expanded to k1·g + k2·x + k0.
      const a = gm[ch] * invStd;
      k1[ch] = a;
      k2[ch] = -a * invStd * dg / rows;
      k0[ch] = -a * gSum[ch] / rows + a * invStd * m[ch] * dg / rows;
    }
    const dx = ops.release(ops.add(ops.mul(g, ops.vector(k1)), ops.affine(x, k2, k0)));
    return [dx, ops.release(ops.vector(dGamma)), ops.release(ops.vector(gSum))];
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
      const [dx, dGamma, dBeta] = tf.engine().runKernel(
        BatchNormTrainGrad, { dy, x, y, gamma, mean, variance }, attrs) as tf.Tensor[];
      return { x: () => dx, gamma: () => dGamma, beta: () => dBeta };
    },
  });
}
