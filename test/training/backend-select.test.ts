import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, parseBackendChoice, selectBackend } from '../../training/backends/select.js';

describe('backend selection', () => {
  it('auto falls back to wasm with training kernels and says why the native backends were skipped', async () => {
    const info = await selectBackend('auto');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.name).toBe('wasm');
    expect(info.trainingKernels).toEqual(expect.arrayContaining(['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', 'Tile', 'Sum', 'MaxPoolGrad']));
    expect(info.skipped).toEqual([
      { package: '@tensorflow/tfjs-node-gpu', reason: 'not installed' },
      { package: '@tensorflow/tfjs-node', reason: 'not installed' },
    ]);
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  it('a requested backend that cannot load is a clear error', async () => {
    await expect(selectBackend('tensorflow')).rejects.toThrow(BackendUnavailableError);
    await expect(selectBackend('tensorflow')).rejects.toThrow(/@tensorflow\/tfjs-node-gpu: not installed.*--backend wasm/);
  });

  it('cpu only on request, and unknown names list the choices', async () => {
    expect((await selectBackend('cpu')).name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(() => parseBackendChoice('gpu')).toThrow("unknown backend 'gpu'; choose one of: auto, tensorflow, wasm, cpu");
  });
});
