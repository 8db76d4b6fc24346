/**
 * The whole training step: every variable's gradient (and the BatchNorm batch statistics) under
 * wasm + gradfleet's kernels, and under the native (oneDNN) backend, matches the stock cpu backend
 * on the same inputs and dropout masks.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initialWeights } from '../../training/models/init.js';
import { getModel } from '../../training/models/zoo.js';
import { type Contribution, ModelRunner, computeContribution } from '../../training/step/model-runner.js';
import { type TestBackend, maxAbsDiff, norm, onBackend, randomArray, relativeError } from '../helpers/backends.js';

async function contributionOn(backend: TestBackend, modelName: string, batch: number): Promise<Contribution> {
  return onBackend(backend, () => {
    const model = getModel(modelName);
    const images = randomArray(batch * 28 * 28, 5).map((v) => v * 2);
    const labels = Uint8Array.from({ length: batch }, (_, i) => (i * 7) % 10);
    return computeContribution(model, initialWeights(model, 3), { images, labels, count: batch }, 1234);
  });
}

describe.each([
  ['mnist-small', 8],
  // The cpu reference takes ~12 s per batch-4 step of mnist-cnn; it is computed once for both backends.
  ['mnist-cnn', 4],
])('%s gradients vs cpu', (modelName, batch) => {
  let expected: Contribution;
  beforeAll(async () => {
    expected = await contributionOn('cpu', modelName, batch);
  }, 120_000);

  it.each(['wasm', 'native'] as const)('%s: every parameter agrees (relative < 1e-4, or absolute < 1e-5 where the reference norm < 1e-4)', async (backend) => {
    const actual = await contributionOn(backend, modelName, batch);
    expect(Math.abs(actual.loss - expected.loss)).toBeLessThan(1e-5);
    expect(actual.correct).toBe(expected.correct);
    const runner = new ModelRunner(getModel(modelName));
    const failures: string[] = [];
    for (const e of runner.layout.entries) {
      const a = actual.values.subarray(e.offset, e.offset + e.size);
      const b = expected.values.subarray(e.offset, e.offset + e.size);
      const small = norm(b) < 1e-4;
      const err = small ? maxAbsDiff(a, b) : relativeError(a, b);
      if (!(err < (small ? 1e-5 : 1e-4))) failures.push(`${e.name}: ${small ? 'abs' : 'rel'} error ${err}`);
    }
    expect(failures).toEqual([]);
    // A test that compares zeros with zeros proves nothing: the kernels' gradients must be real.
    const kernel = runner.layout.entries[0];
    expect(norm(expected.values.subarray(kernel.offset, kernel.offset + kernel.size))).toBeGreaterThan(1e-3);
  }, 120_000);
});
