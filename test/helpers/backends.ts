import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, type BackendOptions, selectBackend } from '../../training/backends/select.js';

export type TestBackend = Exclude<BackendName, 'tensorflow'>;

let selected: TestBackend | undefined;

/**
 * Switches the process-wide tfjs backend (wasm gets gradfleet's kernels on first use). Native runs
 * on the wasm backend too, so what was selected is tracked here, not read from tfjs.
 */
export async function useBackend(name: TestBackend, options: BackendOptions = {}): Promise<void> {
  if (
    selected === name &&
    tf.getBackend() === (name === 'native' ? 'wasm' : name) &&
    options.threads === undefined
  )
    return;
  // One oneDNN thread unless a test asks for more: the test machine's cores are shared.
  await selectBackend(name, undefined, { threads: 1, ...options });
  selected = name;
}

export async function onBackend<T>(name: TestBackend, fn: () => T): Promise<T> {
  await useBackend(name);
  return fn();
}

export const norm = (a: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
};

export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  const diff = new Float64Array(actual.length);
  for (let i = 0; i < actual.length; i++) diff[i] = actual[i] - expected[i];
  return norm(diff) / norm(expected);
}

export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < actual.length; i++) m = Math.max(m, Math.abs(actual[i] - expected[i]));
  return m;
}

/** Deterministic pseudo-random floats in [-1, 1) without touching tfjs's global RNG. */
export function randomArray(size: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 0x80000000 - 1;
  }
  return out;
}
