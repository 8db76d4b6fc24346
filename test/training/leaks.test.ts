/**
 * 100 training steps on wasm, on native and on webgpu: tensors, backend buffers and the wasm heap
 * (webgpu: the GPU buffers in use and allocated) stay flat; on native also the addon's own buffers
 * (none held between calls) and the process's RSS.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { loadNativeAddon } from '../../training/kernels/native/addon.js';
import type { WasmBackend } from '../../training/kernels/wasm-backend.js';
import { initialWeights } from '../../training/models/init.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { DEFAULT_ADAM, createAdamState } from '../../training/optimizer/adam.js';
import { adamRule, applyUpdate } from '../../training/optimizer/apply-update.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { randomArray, useBackend } from '../helpers/backends.js';

/**
 * From step 30 to 100, RSS may drift by allocator noise, not by a leak's per-step growth (one mnist-cnn
 * gradient alone is 14 MB). Native only: the wasm figures are the heap's.
 */
const RSS_SLACK_BYTES = 24 * 1024 * 1024;

/**
 * RSS after a full collection: each step leaves ~42 MB of mnist-cnn garbage (weights and Adam's moments),
 * and whether V8 had collected it when RSS is read made the figure swing by 60 MB.
 */
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const settledRss = () => {
  collectGarbage();
  return process.memoryUsage().rss;
};

describe.each([
  ['mnist-small', 16, 'wasm'],
  ['mnist-cnn', 4, 'wasm'],
  ['mnist-small', 16, 'native'],
  ['mnist-cnn', 4, 'native'],
  // Mesa's software adapter runs a tiny mnist-small step in ~0.2 s.
  ['mnist-small', 2, 'webgpu'],
] as const)('%s (batch %i) on %s', (name, batch, backendName) => {
  it('leaks nothing over 100 steps (weights updated every step)', async () => {
    await useBackend(backendName);
    const model = getModel(name);
    const layout = paramLayout(model);
    const runner = new ModelRunner(model);
    let weights = initialWeights(model, 1);
    let adam = createAdamState(layout.size);
    const images = randomArray(batch * 784, 9);
    const labels = Uint8Array.from({ length: batch }, (_, i) => i % 10);
    const backend = tf.backend();
    const heap = () =>
      backendName === 'webgpu' ? 0 : (backend as WasmBackend).wasm.HEAPU8.buffer.byteLength;
    const gpu = () => {
      const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesAllocatedInGPU?: number };
      return { inUse: m.numBytesInGPU ?? 0, allocated: m.numBytesAllocatedInGPU ?? 0 };
    };
    const addon = backendName === 'native' ? loadNativeAddon().addon : null;
    const snapshot = () => ({
      tensors: tf.memory().numTensors,
      bytes: tf.memory().numBytes,
      dataIds: backend.numDataIds(),
      heap: heap(),
      gpu: gpu(),
      addonBytes: addon?.info().scratchBytes ?? 0,
    });
    let afterWarmup: ReturnType<typeof snapshot> | undefined;
    let rssAt30 = 0;
    for (let step = 0; step < 100; step++) {
      runner.setWeights(weights);
      const c = await runner.contribution({ images, labels, count: batch }, step);
      ({ weights, adam } = applyUpdate(layout, weights, c.values, adam, adamRule(DEFAULT_ADAM)));
      if (step === 9) afterWarmup = snapshot();
      if (step === 29) rssAt30 = settledRss();
    }
    expect(snapshot()).toEqual(afterWarmup);
    expect(afterWarmup!.addonBytes).toBe(0);
    if (backendName === 'webgpu') expect(afterWarmup!.gpu.allocated).toBeGreaterThan(0);
    if (addon) expect(settledRss() - rssAt30).toBeLessThan(RSS_SLACK_BYTES);
    runner.dispose();
    expect(tf.memory().numTensors).toBe(afterWarmup!.tensors - layout.entries.length);
  }, 120_000);
});
