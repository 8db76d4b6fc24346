/**
 * Reading a list of tensors back end to end into one Float32Array (a contribution, in the weights'
 * layout), on whichever backend is active. The generic way is one device-side concat and one readback;
 * a backend with a faster one registers it when it activates (the wasm family copies straight out of
 * its heap: backends/wasm.ts), so that ModelRunner never needs to know which backend it runs on.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * The tensors end to end, or null when this reader cannot take them (the generic path then does).
 * `into` is used when its length fits (a buffer recycled from an earlier step).
 */
export type FlatReader = (tensors: readonly tf.Tensor[], into?: Float32Array) => Float32Array | null;

/** By tfjs backend name (`tf.getBackend()`). */
const readers = new Map<string, FlatReader>();

/** Called by a backend module when it makes `tfBackend` the active tfjs backend. */
export function registerFlatReader(tfBackend: string, reader: FlatReader): void {
  readers.set(tfBackend, reader);
}

/**
 * One tensor's values into `into` (its length), at once: the backend's own reader, else a blocking readback.
 * For a CPU backend, where data is ready as a kernel returns; ModelRunner reads gradients this way in the
 * middle of backward.
 */
export function readIntoSync(tensor: tf.Tensor, into: Float32Array): void {
  if (readers.get(tf.getBackend())?.([tensor], into) === into) return;
  into.set(tensor.dataSync() as Float32Array);
}

/** The tensors' values end to end: the active backend's own reader where it has one, else concat + readback. */
export async function readFlat(tensors: readonly tf.Tensor[], into?: Float32Array): Promise<Float32Array> {
  const fast = readers.get(tf.getBackend())?.(tensors, into);
  if (fast) return fast;
  const flat = tf.tidy(() => tf.concat(tensors.map((t) => t.reshape([-1]))));
  try {
    return (await flat.data()) as Float32Array;
  } finally {
    flat.dispose();
  }
}
