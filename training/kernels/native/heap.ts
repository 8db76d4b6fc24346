/**
 * Where a wasm-backend tensor lives for the addon: its byte offset inside the wasm heap. The heap's
 * ArrayBuffer is fetched at each call (after the outputs are allocated), because a growing wasm
 * memory replaces it.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { WasmBackend } from '../wasm-backend.js';

export const offsetOf = (backend: WasmBackend, t: tf.TensorInfo): number =>
  backend.dataIdMap.get(t.dataId).memoryOffset;

export const heapOf = (backend: WasmBackend): ArrayBuffer => backend.wasm.HEAPU8.buffer as ArrayBuffer;

/** Float32 tensors with at least one element: the only ones the native kernels take. */
export const nativeFloats = (...ts: tf.TensorInfo[]): boolean =>
  ts.every((t) => t.dtype === 'float32' && t.shape.every((d) => d > 0));

/** Allocates the outputs, then runs the addon into them; frees them if it refuses. */
export function intoNewOutputs(
  backend: WasmBackend,
  shapes: number[][],
  run: (outs: tf.TensorInfo[]) => void,
): tf.TensorInfo[] {
  const outs = shapes.map((shape) => backend.makeOutput(shape, 'float32'));
  try {
    run(outs);
  } catch (err) {
    for (const out of outs) backend.disposeData(out.dataId);
    throw err;
  }
  return outs;
}

export const intoNewOutput = (
  backend: WasmBackend,
  shape: number[],
  run: (out: tf.TensorInfo) => void,
): tf.TensorInfo => intoNewOutputs(backend, [shape], ([out]) => run(out))[0];
