/**
 * The slice of tfjs-backend-wasm's internals that gradfleet's kernels use. The backend does not
 * export these types, so they are declared here once, at the one boundary, and checked at install
 * time (see `assertWasmBackend`).
 */
import * as tf from '@tensorflow/tfjs-core';

interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
  refCount: number;
}

export interface WasmBackend extends tf.KernelBackend {
  dataIdMap: { get(dataId: tf.DataId): WasmTensorData; has(dataId: tf.DataId): boolean };
  wasm: { HEAPU8: Uint8Array };
  makeOutput(shape: readonly number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  incRef(dataId: tf.DataId): void;
  numDataIds(): number;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

export function assertWasmBackend(backend: tf.KernelBackend): asserts backend is WasmBackend {
  const b = backend as Partial<WasmBackend>;
  if (
    !b.dataIdMap ||
    !b.wasm ||
    typeof b.makeOutput !== 'function' ||
    typeof b.typedArrayFromHeap !== 'function' ||
    typeof b.incRef !== 'function'
  ) {
    throw new Error('gradfleet wasm kernels: the active backend does not look like tfjs-backend-wasm 4.x');
  }
}

/**
 * A Float32Array view of a tensor's bytes inside the wasm heap. Views go stale when the heap grows,
 * so take them after every allocation that precedes their use, never cache them.
 */
export function f32(backend: WasmBackend, info: tf.TensorInfo): Float32Array {
  if (info.dtype !== 'float32') throw new Error(`expected a float32 tensor, got ${info.dtype}`);
  return backend.typedArrayFromHeap(info) as Float32Array;
}

/**
 * The tensors' values end to end in one new Float32Array, copied straight out of the wasm heap, or
 * null unless all are float32 tensors of the active wasm backend; `into` is used when its length
 * fits (a buffer recycled from an earlier step). What a contribution is read with:
 * a Concat kernel plus a readback copies mnist-cnn's 14 MB twice and took 6% of a native step.
 */
export function readConcatenated(tensors: readonly tf.Tensor[], into?: Float32Array): Float32Array | null {
  const backend = tf.backend() as Partial<WasmBackend>;
  if (tf.getBackend() !== 'wasm' || !backend.dataIdMap || !backend.typedArrayFromHeap) return null;
  if (!tensors.every((t) => t.dtype === 'float32' && backend.dataIdMap!.has(t.dataId))) return null;
  const size = tensors.reduce((n, t) => n + t.size, 0);
  const out = into?.length === size ? into : new Float32Array(size);
  let at = 0;
  for (const t of tensors) {
    out.set(f32(backend as WasmBackend, t), at);
    at += t.size;
  }
  return out;
}

export type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: WasmBackend; attrs?: tf.NamedAttrMap };
export type WasmKernelFunc = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** tfjs-backend-wasm's own kernels, recorded before gradfleet replaces any of them. */
const stockConfigs = new Map<string, tf.KernelConfig>();

/** Records the stock kernels under `names`; a name is recorded once, so call it before any override. */
export function captureStockKernels(names: Iterable<string>): void {
  for (const name of names) {
    const k = stockConfigs.has(name) ? undefined : tf.getKernel(name, 'wasm');
    if (k) stockConfigs.set(name, k);
  }
}

/** The stock kernel's registration, to put back when a kernel set that replaced it is uninstalled. */
export const stockKernelConfig = (name: string): tf.KernelConfig | undefined => stockConfigs.get(name);

/** The stock wasm kernel registered under `name`, so that overrides can fall back to it. */
export function stockKernel(name: string): WasmKernelFunc {
  const k = stockConfigs.get(name) ?? tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`tfjs-backend-wasm has no stock kernel ${name}`);
  return k.kernelFunc as unknown as WasmKernelFunc;
}

/** Frees intermediates made inside a kernel (reshape views included: they hold a ref count). */
export function disposeAll(backend: WasmBackend, ...infos: tf.TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A float32 output of zeros: the gradient with respect to anything through an empty tensor. */
export function zerosOutput(backend: WasmBackend, shape: readonly number[]): tf.TensorInfo {
  const out = backend.makeOutput(shape, 'float32');
  f32(backend, out).fill(0);
  return out;
}

/**
 * The intermediates of one kernel call, freed together (call `dispose` in a `finally`). `release`
 * takes one back out, when it becomes the kernel's output.
 */
export class Scratch {
  private readonly made: tf.TensorInfo[] = [];

  constructor(private readonly backend: WasmBackend) {}

  keep<T extends tf.TensorInfo>(t: T): T {
    this.made.push(t);
    return t;
  }

  release<T extends tf.TensorInfo>(t: T): T {
    this.made.splice(this.made.indexOf(t), 1);
    return t;
  }

  dispose(): void {
    disposeAll(this.backend, ...this.made.splice(0));
  }
}
