/**
 * The cluster's headline property: with the same seed, global batch and micro-batch, the weights
 * are the same bits whatever the number of workers, and match a single-process reference that
 * applies the same averaged gradients.
 */
import { describe, expect, it } from 'vitest';
import { loadRunState } from '../../coordinator/run-outputs.js';
import { loadDataset, gatherLabels, normalizeInto, PIXELS_PER_IMAGE } from '../../training/data/index.js';
import { initialWeights } from '../../training/models/init.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { DEFAULT_ADAM, createAdamState } from '../../training/optimizer/adam.js';
import { adamRule, applyUpdate } from '../../training/optimizer/apply-update.js';
import {
  dropoutSeed,
  epochOrder,
  microBatchRange,
  positionOf,
  stepBatch,
} from '../../training/parallel/step-plan.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { maxAbsDiff, useBackend } from '../helpers/backends.js';
import { expectOk, run, smallMnist, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
// 300 samples, batch 64: four full steps and a short one (44) per epoch; micro-batch 24 makes the
// last micro-batch of every step short too (64 = 24 + 24 + 16).
const data = smallMnist(dir, 300, 200);
const common = [
  '--model',
  'mnist-small',
  '--backend',
  'wasm',
  '--batch-size',
  '64',
  '--micro-batch',
  '24',
  '--seed',
  '7',
  '--epochs',
  '4',
  '--max-steps',
  '20',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];

/**
 * The same 20 steps in this process, naively: each micro-batch's contribution weighted by its
 * size, summed left to right in float64, divided by the batch size: no tree, no workers.
 */
async function referenceWeights(): Promise<Float32Array> {
  await useBackend('wasm');
  const model = getModel('mnist-small');
  const layout = paramLayout(model);
  const train = loadDataset(data.train);
  const geometry = { trainCount: train.count, batchSize: 64, microBatchSize: 24 };
  const runner = new ModelRunner(model);
  let weights = initialWeights(model, 7);
  let adam = createAdamState(layout.size);
  const images = new Float32Array(24 * PIXELS_PER_IMAGE);
  const labels = new Uint8Array(24);
  for (let step = 0; step < 20; step++) {
    const position = positionOf(geometry, step);
    const batch = stepBatch(geometry, position.stepInEpoch);
    const order = epochOrder(7, position.epoch, train.count);
    const sum = new Float64Array(layout.size);
    runner.setWeights(weights);
    for (let i = 0; i < batch.microBatches; i++) {
      const { start, end } = microBatchRange(geometry, batch, i);
      const idx = order.subarray(start, end);
      const c = await runner.contribution(
        {
          images: normalizeInto(train, idx, images),
          labels: gatherLabels(train.labels!, idx, labels),
          count: idx.length,
        },
        dropoutSeed(7, step, i),
      );
      for (let j = 0; j < sum.length; j++) sum[j] += c.values[j] * c.count;
    }
    const average = Float32Array.from(sum, (v) => v / batch.samples);
    ({ weights, adam } = applyUpdate(layout, weights, average, adam, adamRule(DEFAULT_ADAM)));
  }
  runner.dispose();
  return weights;
}

/** mnist-small's parameters (docs/design.md#models). */
const MNIST_SMALL_PARAMS = 60_874;

/**
 * The largest |a − b|, once both are whole weight vectors: maxAbsDiff alone reads only the common
 * length, so an empty or cut vector would pass for any reference.
 */
function weightsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(MNIST_SMALL_PARAMS);
  expect(b.length).toBe(MNIST_SMALL_PARAMS);
  return maxAbsDiff(a, b);
}

describe('determinism across worker counts', () => {
  it('1, 2 and 3 workers end with the same weights_sha256, equal to a single-process reference within 1e-5', async () => {
    const summaries = [];
    for (const workers of [1, 2, 3]) {
      const out = `${dir}/run-${workers}`;
      summaries.push({
        out,
        ...expectOk(await run(['train', ...common, '--workers', String(workers), '--out', out])),
      });
    }
    expect(summaries.map((s) => s.workers)).toEqual([1, 2, 3]);
    expect(summaries.map((s) => s.steps)).toEqual([20, 20, 20]);
    const sha = summaries[0].weights_sha256;
    expect(sha).toMatch(/^[0-9a-f]{64}$/);
    expect(summaries.map((s) => s.weights_sha256)).toEqual([sha, sha, sha]);
    // Identical evaluations too: the test loss is summed in fixed chunks.
    expect(new Set(summaries.map((s) => s.test_loss)).size).toBe(1);

    const { state } = await loadRunState(summaries[0].out);
    expect(state.step).toBe(20);
    const reference = await referenceWeights();
    expect(weightsDiff(state.weights, reference)).toBeLessThan(1e-5);
    // …and the reference is not trivially close: training moved the weights.
    expect(weightsDiff(reference, initialWeights(getModel('mnist-small'), 7))).toBeGreaterThan(1e-3);
  }, 240_000);

  it('--wire bf16 trains as well as f32, is kept in the run config, and is the one mode that gives up bit-identity', async () => {
    const out = `${dir}/bf16`;
    const bf16 = expectOk(await run(['train', ...common, '--workers', '2', '--wire', 'bf16', '--out', out]));
    const f32 = expectOk(await run(['train', ...common, '--workers', '2', '--out', `${dir}/f32`]));
    expect(bf16.wire).toBe('bf16');
    expect(bf16.weights_sha256).not.toBe(f32.weights_sha256);
    console.log(`determinism: test accuracy f32 ${f32.test_accuracy}, bf16 ${bf16.test_accuracy}`);
    // Both must have learned (chance is 0.1), or "as well as" would hold for two broken runs.
    expect(f32.test_accuracy).toBeGreaterThan(0.45);
    expect(bf16.test_accuracy).toBeGreaterThan(0.45);
    expect(Math.abs(bf16.test_accuracy - f32.test_accuracy)).toBeLessThan(0.03);
    expect((await loadRunState(out)).state.config.wire).toBe('bf16');
  }, 240_000);

  it('holds for mnist-cnn (BatchNorm statistics and dropout masks reduced over the same tree)', async () => {
    const args = [
      'train',
      '--model',
      'mnist-cnn',
      '--backend',
      'wasm',
      '--batch-size',
      '32',
      '--micro-batch',
      '8',
      '--max-steps',
      '3',
      '--seed',
      '3',
      '--train',
      data.train,
      '--test',
      data.test,
      '--json',
    ];
    const one = expectOk(await run([...args, '--workers', '1', '--out', `${dir}/cnn-1`]));
    const two = expectOk(await run([...args, '--workers', '2', '--out', `${dir}/cnn-2`]));
    expect(two.weights_sha256).toBe(one.weights_sha256);
    expect(two.workers).toBe(2);
  }, 240_000);
});
