/**
 * The whole training step: every variable's gradient (and the BatchNorm batch statistics) under
 * wasm + gradfleet's kernels, under the native (oneDNN) backend and under WebGPU (here on Mesa's
 * software Vulkan adapter) matches the stock cpu backend on the same inputs and dropout masks.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { agreementContribution, compareContributions } from '../../bench/agreement.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import type { Contribution } from '../../training/step/model-runner.js';
import { norm, onBackend } from '../helpers/backends.js';

describe.each([
  ['mnist-small', 8],
  // The cpu reference takes ~12 s per batch-4 step of mnist-cnn; it is computed once for every backend.
  ['mnist-cnn', 4],
])('%s gradients vs cpu', (modelName, batch) => {
  let expected: Contribution;
  beforeAll(async () => {
    expected = await onBackend('cpu', () => agreementContribution(modelName, batch));
  }, 120_000);

  it.each(['wasm', 'native', 'webgpu'] as const)(
    '%s: every parameter agrees (relative < 1e-4, or absolute < 1e-5 where the reference norm < 1e-4)',
    async (backend) => {
      const actual = await onBackend(backend, () => agreementContribution(modelName, batch));
      const layout = paramLayout(getModel(modelName));
      const agreement = compareContributions(layout, actual, expected);
      console.log(
        `${modelName} on ${backend}: max rel error ${agreement.max_rel_error.toExponential(2)}, max abs error (near-zero params) ${agreement.max_abs_error.toExponential(2)}`,
      );
      expect(agreement.loss_abs_error).toBeLessThan(1e-5);
      expect(actual.correct).toBe(expected.correct);
      expect(
        agreement.params.filter((p) => !p.ok).map((p) => `${p.name}: ${p.kind} error ${p.error}`),
      ).toEqual([]);
      // A test that compares zeros with zeros proves nothing: the kernels' gradients must be real.
      const kernel = layout.entries[0];
      expect(norm(expected.values.subarray(kernel.offset, kernel.offset + kernel.size))).toBeGreaterThan(
        1e-3,
      );
    },
    120_000,
  );
});
