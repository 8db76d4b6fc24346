import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, parseBackendChoice, selectBackend } from '../../training/backends/select.js';

// npm ci builds the native addon once scripts/install-test-deps.sh has installed libdnnl-dev; the
// case without it is test/cluster/native.test.ts.
describe('backend selection', () => {
  it('auto takes native (oneDNN kernels on the wasm backend) after saying why tfjs-node was skipped', async () => {
    const info = await selectBackend('auto', undefined, { threads: 1 });
    expect(info.name).toBe('native');
    expect(info.package).toMatch(/^gradfleet native addon \(oneDNN\) \d+\.\d+\.\d+$/);
    expect(info.threads).toBe(1);
    expect(tf.getBackend()).toBe('wasm');
    expect(info.trainingKernels).toEqual(expect.arrayContaining(['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', '_FusedMatMul', 'MaxPoolGrad']));
    expect(info.skipped).toEqual([
      { package: '@tensorflow/tfjs-node-gpu', reason: 'not installed' },
      { package: '@tensorflow/tfjs-node', reason: 'not installed' },
    ]);
  });

  it('wasm after native puts the stock kernels back where only native replaced them', async () => {
    const nativeConv = tf.getKernel('Conv2D', 'wasm')?.kernelFunc;
    const info = await selectBackend('wasm');
    expect(info.name).toBe('wasm');
    expect(info.trainingKernels).toEqual(expect.arrayContaining(['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', 'Tile', 'Sum', 'MaxPoolGrad']));
    expect(info.trainingKernels).not.toContain('Conv2D');
    expect(tf.getKernel('Conv2D', 'wasm')?.kernelFunc).not.toBe(nativeConv);
    // …and the stock Conv2D still computes.
    expect(Array.from(tf.conv2d(tf.ones([1, 2, 2, 1]), tf.ones([1, 1, 1, 1]), 1, 'same').dataSync())).toEqual([1, 1, 1, 1]);
  });

  it('a requested backend that cannot load is a clear error', async () => {
    await expect(selectBackend('tensorflow')).rejects.toThrow(BackendUnavailableError);
    await expect(selectBackend('tensorflow')).rejects.toThrow(/@tensorflow\/tfjs-node-gpu: not installed.*--backend wasm/);
  });

  it('cpu only on request, and unknown names list the choices', async () => {
    expect((await selectBackend('cpu')).name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(() => parseBackendChoice('gpu')).toThrow("unknown backend 'gpu'; choose one of: auto, tensorflow, native, wasm, cpu");
  });
});
