/**
 * The compute benchmark: training-step throughput of a model on a backend, and the GFLOP/s of its
 * convolution and dense layers' three kernels (forward, input gradient, weight gradient) at the
 * step's shapes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initialWeights } from '../training/models/init.js';
import { type ModelSpec, forwardFlopsPerSample, layerOutputShapes } from '../training/models/spec.js';
import { deriveSeed, Rng } from '../training/rng.js';
import { ModelRunner } from '../training/step/model-runner.js';
import { median } from './median.js';

export interface StepBenchmark {
  model: string;
  /** tfjs's name for it (native runs on the wasm backend: the caller knows which it selected). */
  backend: string;
  batch: number;
  steps: number;
  ms_per_step: number;
  samples_per_s: number;
  /** Achieved, counting a training step as 3× the forward FLOPs. */
  gflops: number;
}

/** A layer's three training kernels: forward, the gradient of its input, of its weights. */
export interface LayerBenchmark {
  layer: string;
  shape: string;
  forward_gflops: number;
  input_grad_gflops: number;
  filter_grad_gflops: number;
}

function randomBatch(model: ModelSpec, batch: number, seed: number) {
  const rng = new Rng(seed);
  const [h, w, c] = model.inputShape;
  return {
    images: Float32Array.from({ length: batch * h * w * c }, () => rng.nextGaussian()),
    labels: Uint8Array.from({ length: batch }, () => rng.nextInt(model.classes)),
    count: batch,
  };
}

/**
 * Median wall time of `steps` training steps (contribution only: what a worker does, recycling the
 * contribution's buffer as a worker does), after 2 warm-ups.
 */
export async function benchmarkStep(
  model: ModelSpec,
  batch: number,
  steps: number,
  onStep?: (i: number) => void,
): Promise<StepBenchmark> {
  const runner = new ModelRunner(model);
  try {
    runner.setWeights(initialWeights(model, 1));
    const data = randomBatch(model, batch, 2);
    const times: number[] = [];
    let spare: Float32Array | undefined;
    for (let i = -2; i < steps; i++) {
      const started = performance.now();
      spare = (await runner.contribution(data, deriveSeed(3, i + 2), spare)).values;
      if (i >= 0) {
        times.push(performance.now() - started);
        onStep?.(i);
      }
    }
    const ms = median(times);
    return {
      model: model.name,
      backend: tf.getBackend(),
      batch,
      steps,
      ms_per_step: ms,
      samples_per_s: (batch * 1000) / ms,
      gflops: (3 * forwardFlopsPerSample(model) * batch) / (ms * 1e6),
    };
  } finally {
    runner.dispose();
  }
}

/**
 * Times one kernel call to its output's readback (median of `repeats`, after a warm-up), freeing
 * the output each time. Asynchronous readback: a GPU backend has no synchronous one.
 */
async function timeKernel(
  kernel: string,
  inputs: tf.NamedTensorMap,
  attrs: object,
  repeats: number,
): Promise<number> {
  const times: number[] = [];
  for (let i = -1; i < repeats; i++) {
    const started = performance.now();
    const out = tf.engine().runKernel(kernel, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
    await out.data();
    if (i >= 0) times.push(performance.now() - started);
    out.dispose();
  }
  return median(times);
}

/** Runs `fn` on fresh random tensors of the given shapes and frees them after (tf.tidy cannot wait). */
async function withRandom<T>(shapes: number[][], fn: (...tensors: tf.Tensor[]) => Promise<T>): Promise<T> {
  const tensors = shapes.map((shape) => tf.randomNormal(shape));
  try {
    return await fn(...tensors);
  } finally {
    tf.dispose(tensors);
  }
}

export async function benchmarkConvLayers(
  model: ModelSpec,
  batch: number,
  repeats: number,
): Promise<LayerBenchmark[]> {
  const shapes = layerOutputShapes(model);
  const results: LayerBenchmark[] = [];
  for (const [i, layer] of model.layers.entries()) {
    if (layer.kind !== 'conv2d') continue;
    const inShape = i === 0 ? [...model.inputShape] : shapes[i - 1];
    const [h, w, ci] = inShape;
    const k = layer.kernelSize;
    const co = layer.filters;
    const flops = 2 * batch * h * w * co * k * k * ci;
    const gflops = (ms: number) => flops / (ms * 1e6);
    results.push(
      await withRandom(
        [
          [batch, h, w, ci],
          [k, k, ci, co],
          [batch, h, w, co],
        ],
        async (x, filter, dy) => {
          const common = { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined };
          return {
            layer: layer.name,
            shape: `${h}×${w}×${ci}→${co}`,
            forward_gflops: gflops(
              await timeKernel(tf.Conv2D, { x, filter }, { ...common, dilations: [1, 1] }, repeats),
            ),
            input_grad_gflops: gflops(
              await timeKernel(
                tf.Conv2DBackpropInput,
                { dy, filter },
                { ...common, inputShape: [batch, h, w, ci] },
                repeats,
              ),
            ),
            filter_grad_gflops: gflops(
              await timeKernel(
                tf.Conv2DBackpropFilter,
                { x, dy },
                { ...common, filterShape: [k, k, ci, co] },
                repeats,
              ),
            ),
          };
        },
      ),
    );
  }
  return results;
}

export interface KernelProfileRow {
  kernel: string;
  calls: number;
  ms: number;
}

/** Per-kernel time of one training step (tf.profile), largest first. Op wrappers are left out. */
export async function profileStep(model: ModelSpec, batch: number): Promise<KernelProfileRow[]> {
  const runner = new ModelRunner(model);
  try {
    runner.setWeights(initialWeights(model, 1));
    const data = randomBatch(model, batch, 2);
    await runner.contribution(data, 1);
    const info = await tf.profile(async () => {
      await runner.contribution(data, 2);
    });
    const rows = new Map<string, KernelProfileRow>();
    for (const k of info.kernels) {
      if (k.name.endsWith('__op')) continue;
      const row = rows.get(k.name) ?? { kernel: k.name, calls: 0, ms: 0 };
      row.calls++;
      row.ms += Number(k.kernelTimeMs);
      rows.set(k.name, row);
    }
    return [...rows.values()].sort((a, b) => b.ms - a.ms);
  } finally {
    runner.dispose();
  }
}

/** Dense layers as the step runs them: y = x·W (+ bias), dx = dy·Wᵀ, dW = xᵀ·dy. */
export async function benchmarkDenseLayers(
  model: ModelSpec,
  batch: number,
  repeats: number,
): Promise<LayerBenchmark[]> {
  const shapes = layerOutputShapes(model);
  const results: LayerBenchmark[] = [];
  for (const [i, layer] of model.layers.entries()) {
    if (layer.kind !== 'dense') continue;
    const inputs = shapes[i - 1].reduce((a, b) => a * b, 1);
    const gflops = (ms: number) => (2 * batch * inputs * layer.units) / (ms * 1e6);
    // Rank 3, as tf.matMul hands them to the kernels (the stock wasm ones read rank 3 only).
    results.push(
      await withRandom(
        [[1, batch, inputs], [1, inputs, layer.units], [layer.units], [1, batch, layer.units]],
        async (x, w, bias, dy) => ({
          layer: layer.name,
          shape: `${inputs}→${layer.units}`,
          forward_gflops: gflops(
            await timeKernel(
              tf._FusedMatMul,
              { a: x, b: w, bias },
              { transposeA: false, transposeB: false, activation: 'linear' },
              repeats,
            ),
          ),
          input_grad_gflops: gflops(
            await timeKernel(
              tf.BatchMatMul,
              { a: dy, b: w },
              { transposeA: false, transposeB: true },
              repeats,
            ),
          ),
          filter_grad_gflops: gflops(
            await timeKernel(
              tf.BatchMatMul,
              { a: x, b: dy },
              { transposeA: true, transposeB: false },
              repeats,
            ),
          ),
        }),
      ),
    );
  }
  return results;
}
