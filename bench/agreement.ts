/**
 * Gradient agreement: a backend's whole training-step contribution (every parameter's gradient and
 * the BatchNorm batch statistics) against the pure-JS cpu backend's, on the same inputs, weights
 * and dropout masks. The tolerance is the one the wasm kernels are held to: relative error
 * ‖a−b‖/‖b‖ < 1e-4 per parameter, or, where the reference norm is below 1e-4 (biases feeding
 * straight into BatchNorm have a true gradient ≈ 0), absolute error < 1e-5.
 */
import { initialWeights } from '../training/models/init.js';
import { type ParamLayout, paramLayout } from '../training/models/spec.js';
import { getModel } from '../training/models/zoo.js';
import { type Contribution, computeContribution } from '../training/step/model-runner.js';

const RELATIVE_TOLERANCE = 1e-4;
const ABSOLUTE_TOLERANCE = 1e-5;
/** Below this reference norm a parameter is compared by absolute error. */
const SMALL_NORM = 1e-4;

interface ParamAgreement {
  name: string;
  kind: 'rel' | 'abs';
  error: number;
  ok: boolean;
}

export interface Agreement {
  params: ParamAgreement[];
  /** Largest relative error over the parameters compared relatively, and absolute over the rest. */
  max_rel_error: number;
  max_abs_error: number;
  loss_abs_error: number;
  same_correct: boolean;
  ok: boolean;
}

const norm = (a: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
};

function relativeError(actual: Float32Array, expected: Float32Array): number {
  let s = 0;
  for (let i = 0; i < actual.length; i++) s += (actual[i] - expected[i]) ** 2;
  return Math.sqrt(s) / norm(expected);
}

function maxAbsDiff(actual: Float32Array, expected: Float32Array): number {
  let m = 0;
  for (let i = 0; i < actual.length; i++) m = Math.max(m, Math.abs(actual[i] - expected[i]));
  return m;
}

export function compareContributions(
  layout: ParamLayout,
  actual: Contribution,
  expected: Contribution,
): Agreement {
  const params = layout.entries.map((e): ParamAgreement => {
    const a = actual.values.subarray(e.offset, e.offset + e.size);
    const b = expected.values.subarray(e.offset, e.offset + e.size);
    const kind = norm(b) < SMALL_NORM ? 'abs' : 'rel';
    const error = kind === 'abs' ? maxAbsDiff(a, b) : relativeError(a, b);
    // NaN fails: `error < tolerance` is false for it.
    return {
      name: e.name,
      kind,
      error,
      ok: error < (kind === 'abs' ? ABSOLUTE_TOLERANCE : RELATIVE_TOLERANCE),
    };
  });
  const worst = (kind: 'rel' | 'abs') =>
    params
      .filter((p) => p.kind === kind)
      .reduce((m, p) => (Number.isNaN(p.error) ? NaN : Math.max(m, p.error)), 0);
  const lossError = Math.abs(actual.loss - expected.loss);
  const sameCorrect = actual.correct === expected.correct;
  return {
    params,
    max_rel_error: worst('rel'),
    max_abs_error: worst('abs'),
    loss_abs_error: lossError,
    same_correct: sameCorrect,
    ok: params.every((p) => p.ok) && lossError < ABSOLUTE_TOLERANCE && sameCorrect,
  };
}

/**
 * The micro-batch every agreement check uses: fixed pseudo-random images, labels 0, 7, 4, …, weights of seed
 * 3.
 */
export function agreementInput(modelName: string, batch: number) {
  const model = getModel(modelName);
  let s = 5;
  const images = Float32Array.from({ length: batch * 28 * 28 }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 0x80000000 - 1) * 2;
  });
  const labels = Uint8Array.from({ length: batch }, (_, i) => (i * 7) % 10);
  return {
    model,
    layout: paramLayout(model),
    weights: initialWeights(model, 3),
    batch: { images, labels, count: batch },
    dropoutSeed: 1234,
  };
}

/** The contribution of the agreement micro-batch on whatever backend is active. */
export async function agreementContribution(modelName: string, batch: number): Promise<Contribution> {
  const input = agreementInput(modelName, batch);
  return computeContribution(input.model, input.weights, input.batch, input.dropoutSeed);
}
