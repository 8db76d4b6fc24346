/**
 * Adam as a pure function over flat float32 buffers (Keras/TF formulation, which the reference
 * models were trained with): the bias correction is folded into the step size and ε is added to
 * √v̂ scaled the same way. Arithmetic is float64 per element, stored as float32, so the same inputs
 * give the same bits on every machine (with the addon's loop or without: ../math/flat-ops.ts).
 */
import { flatOps } from '../math/flat-ops.js';

export interface AdamConfig {
  learningRate: number;
  beta1: number;
  beta2: number;
  /** Keras' default 1e-7 (PyTorch uses 1e-8); it only matters where √v is tiny. */
  epsilon: number;
}

export const DEFAULT_ADAM: AdamConfig = { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };

export interface AdamState {
  /** Number of updates applied so far. */
  step: number;
  m: Float32Array;
  v: Float32Array;
}

export function createAdamState(size: number): AdamState {
  return { step: 0, m: new Float32Array(size), v: new Float32Array(size) };
}

/** A contiguous run of the flat buffers that Adam updates (the trainable parameters). */
export interface ParamSlice {
  offset: number;
  size: number;
}

/**
 * Returns new weights and state; the inputs are not modified unless `inPlace` (the coordinator
 * owns its buffers and saves copying 3 × 14 MB per mnist-cnn step). Only `ranges` are updated, other
 * elements are copied unchanged. Both modes compute the same bits.
 */
export function adamStep(
  weights: Float32Array,
  grads: Float32Array,
  state: AdamState,
  config: AdamConfig,
  ranges: readonly ParamSlice[],
  inPlace = false,
): { weights: Float32Array; state: AdamState } {
  if (
    grads.length !== weights.length ||
    state.m.length !== weights.length ||
    state.v.length !== weights.length
  ) {
    throw new Error(
      `adamStep: size mismatch (weights ${weights.length}, grads ${grads.length}, m ${state.m.length}, v ${state.v.length})`,
    );
  }
  const { learningRate, beta1, beta2, epsilon } = config;
  const t = state.step + 1;
  const stepSize = (learningRate * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
  const w = inPlace ? weights : weights.slice();
  const m = inPlace ? state.m : state.m.slice();
  const v = inPlace ? state.v : state.v.slice();
  const scalars = { beta1, beta2, epsilon, stepSize };
  for (const { offset, size } of ranges) {
    const slice = (a: Float32Array) => a.subarray(offset, offset + size);
    flatOps.adamUpdate(slice(w), slice(grads), slice(m), slice(v), scalars);
  }
  return { weights: w, state: { step: t, m, v } };
}
