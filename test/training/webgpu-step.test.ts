/**
 * Full training steps with Adam on webgpu (Mesa's software adapter here) against the cpu backend:
 * three steps of mnist-small, each backend from its own weights, end with the same updates.
 * Adam's early updates are ≈ ±lr·sign(gradient), so parameters whose gradient is ≈ 0 (biases that
 * feed BatchNorm: their sign is noise) are left out; every other update must agree closely.
 */
import { describe, expect, it } from 'vitest';
import { agreementInput, compareContributions } from '../../bench/agreement.js';
import { DEFAULT_ADAM, createAdamState } from '../../training/optimizer/adam.js';
import { adamRule, applyUpdate } from '../../training/optimizer/apply-update.js';
import { type Contribution, computeContribution } from '../../training/step/model-runner.js';
import { type TestBackend, onBackend, relativeError } from '../helpers/backends.js';

const STEPS = 3;

async function train(backend: TestBackend) {
  const input = agreementInput('mnist-small', 8);
  let weights = input.weights;
  let adam = createAdamState(input.layout.size);
  let first: Contribution | undefined;
  for (let step = 0; step < STEPS; step++) {
    const c = await onBackend(backend, () =>
      computeContribution(input.model, weights, input.batch, input.dropoutSeed + step),
    );
    first ??= c;
    ({ weights, adam } = applyUpdate(input.layout, weights, c.values, adam, adamRule(DEFAULT_ADAM)));
  }
  return { layout: input.layout, start: input.weights, weights, first: first! };
}

describe('mnist-small: three Adam steps on webgpu vs cpu', () => {
  it('every parameter with a real gradient moves the same way (relative error of the update < 1e-3)', async () => {
    const cpu = await train('cpu');
    const gpu = await train('webgpu');
    const compared = compareContributions(cpu.layout, gpu.first, cpu.first)
      .params.map((p, i) => ({ ...p, entry: cpu.layout.entries[i] }))
      .filter((p) => p.kind === 'rel');
    expect(compared.length).toBeGreaterThan(cpu.layout.entries.length / 2);
    const failures = compared.flatMap(({ entry: e }) => {
      const update = (w: Float32Array) =>
        Float32Array.from(w.subarray(e.offset, e.offset + e.size), (v, j) => v - cpu.start[e.offset + j]);
      const err = relativeError(update(gpu.weights), update(cpu.weights));
      return err < 1e-3 ? [] : [`${e.name}: ${err}`];
    });
    expect(failures).toEqual([]);
    // Not vacuous: the weights moved.
    expect(relativeError(cpu.weights, cpu.start)).toBeGreaterThan(1e-4);
  }, 120_000);
});
