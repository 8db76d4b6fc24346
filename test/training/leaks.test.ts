/** 100 training steps on wasm: tensors, backend buffers and the wasm heap stay flat. */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import type { WasmBackend } from '../../training/kernels/wasm-backend.js';
import { initialWeights } from '../../training/models/init.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { DEFAULT_ADAM, createAdamState } from '../../training/optimizer/adam.js';
import { applyUpdate } from '../../training/optimizer/apply-update.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { randomArray, useBackend } from '../helpers/backends.js';

describe.each([['mnist-small', 16], ['mnist-cnn', 4]])('%s on wasm', (name, batch) => {
  it('leaks nothing over 100 steps (weights updated every step)', async () => {
    await useBackend('wasm');
    const model = getModel(name);
    const layout = paramLayout(model);
    const runner = new ModelRunner(model);
    let weights = initialWeights(model, 1);
    let adam = createAdamState(layout.size);
    const images = randomArray(batch * 784, 9);
    const labels = Uint8Array.from({ length: batch }, (_, i) => i % 10);
    const backend = tf.backend() as WasmBackend;
    const snapshot = () => ({ tensors: tf.memory().numTensors, bytes: tf.memory().numBytes, dataIds: backend.numDataIds(), heap: backend.wasm.HEAPU8.buffer.byteLength });
    let afterWarmup: ReturnType<typeof snapshot> | undefined;
    for (let step = 0; step < 100; step++) {
      runner.setWeights(weights);
      const c = runner.contribution({ images, labels, count: batch }, step);
      ({ weights, adam } = applyUpdate(layout, weights, c.values, adam, DEFAULT_ADAM));
      if (step === 9) afterWarmup = snapshot();
    }
    expect(snapshot()).toEqual(afterWarmup);
    runner.dispose();
    expect(tf.memory().numTensors).toBe(afterWarmup!.tensors - layout.entries.length);
  }, 120_000);
});
