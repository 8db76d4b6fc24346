import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  BackendUnavailableError,
  parseBackendChoice,
  releaseBackend,
  selectBackend,
} from '../../training/backends/select.js';

// npm ci builds the native addon once scripts/install-test-deps.sh has installed libdnnl-dev; the
// case without it is test/cluster/native.test.ts.
describe('backend selection', () => {
  it('auto takes native (oneDNN kernels on the wasm backend) after saying why tfjs-node and WebGPU on the software adapter were skipped', async () => {
    const info = await selectBackend('auto', undefined, { threads: 1 });
    expect(info.name).toBe('native');
    expect(info.package).toMatch(/^gradfleet native addon \(oneDNN\) \d+\.\d+\.\d+$/);
    expect(info.threads).toBe(1);
    expect(tf.getBackend()).toBe('wasm');
    expect(info.trainingKernels).toEqual(
      expect.arrayContaining([
        'Conv2D',
        'Conv2DBackpropFilter',
        'Conv2DBackpropInput',
        'BatchMatMul',
        '_FusedMatMul',
        'MaxPoolGrad',
      ]),
    );
    expect(info.skipped).toEqual([
      { package: '@tensorflow/tfjs-node-gpu', reason: 'not installed' },
      // scripts/install-test-deps.sh installs Mesa's Vulkan driver: its llvmpipe adapter is the only one
      // here.
      {
        package: '@tensorflow/tfjs-backend-webgpu',
        reason: expect.stringMatching(
          /^llvmpipe.* is a software adapter \(slower than wasm\): used only with --backend webgpu$/,
        ),
      },
      { package: '@tensorflow/tfjs-node', reason: 'not installed' },
    ]);
    expect(info.adapter).toBeUndefined();
  });

  it('wasm after native puts the stock kernels back where only native replaced them', async () => {
    const nativeConv = tf.getKernel('Conv2D', 'wasm')?.kernelFunc;
    const info = await selectBackend('wasm');
    expect(info.name).toBe('wasm');
    expect(info.trainingKernels).toEqual(
      expect.arrayContaining([
        'Conv2DBackpropFilter',
        'Conv2DBackpropInput',
        'BatchMatMul',
        'Tile',
        'Sum',
        'MaxPoolGrad',
      ]),
    );
    expect(info.trainingKernels).not.toContain('Conv2D');
    expect(tf.getKernel('Conv2D', 'wasm')?.kernelFunc).not.toBe(nativeConv);
    // …and the stock Conv2D still computes.
    expect(Array.from(tf.conv2d(tf.ones([1, 2, 2, 1]), tf.ones([1, 1, 1, 1]), 1, 'same').dataSync())).toEqual(
      [1, 1, 1, 1],
    );
  });

  it('a requested backend that cannot load is a clear error', async () => {
    await expect(selectBackend('tensorflow')).rejects.toThrow(BackendUnavailableError);
    await expect(selectBackend('tensorflow')).rejects.toThrow(
      /@tensorflow\/tfjs-node-gpu: not installed.*--backend wasm/,
    );
  });

  it('webgpu on request takes the software adapter, says so, and can be released and loaded again', async () => {
    const info = await selectBackend('webgpu');
    expect(info).toMatchObject({
      name: 'webgpu',
      package: '@tensorflow/tfjs-backend-webgpu',
      gpu: false,
      adapter: { vendor: 'mesa', software: true },
    });
    expect(info.adapter!.description).toMatch(/llvmpipe/);
    expect(tf.getBackend()).toBe('webgpu');
    expect(
      Array.from(await tf.conv2d(tf.ones([1, 2, 2, 1]), tf.ones([1, 1, 1, 1]), 1, 'same').data()),
    ).toEqual([1, 1, 1, 1]);
    releaseBackend();
    expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
    expect((await selectBackend('webgpu')).name).toBe('webgpu');
    expect(Array.from(await tf.add(tf.ones([3]), tf.ones([3])).data())).toEqual([2, 2, 2]);
    releaseBackend();
  });

  it('--gpu N names a hardware adapter: without one, the error lists the adapters there are', async () => {
    await expect(selectBackend('webgpu', undefined, { gpu: 0 })).rejects.toThrow(
      /--backend webgpu: no backend could be loaded \(@tensorflow\/tfjs-backend-webgpu: --gpu 0: there are 0 hardware adapters \(adapters seen: 0: llvmpipe.*\(mesa, software\)\)\)/,
    );
  });

  it('cpu only on request, and unknown names list the choices', async () => {
    expect((await selectBackend('cpu')).name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(() => parseBackendChoice('gpu')).toThrow(
      "unknown backend 'gpu'; choose one of: auto, tensorflow, webgpu, native, wasm, cpu",
    );
  });
});
