/**
 * `gradfleet train`'s local workers: how many, and which GPU each takes (cli/local-gpus.ts). The
 * decision is pure, so every case runs here on adapter descriptions like those Dawn gives; the
 * last test lists this machine's real adapters (Mesa's software one only, from
 * scripts/install-test-deps.sh) and checks that they count as no GPU.
 */
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { planLocalWorkers, seenAdapters, usesWebGpu } from '../../cli/local-gpus.js';
import type { GpuAdapterInfo } from '../../training/backends/adapters.js';

const gpu = (description: string, device = description): GpuAdapterInfo => ({
  vendor: 'nvidia',
  architecture: 'hopper',
  device,
  description,
  software: false,
});
const llvmpipe: GpuAdapterInfo = {
  vendor: 'mesa',
  architecture: 'software',
  device: 'llvmpipe',
  description: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)',
  software: true,
};
const h200 = gpu('NVIDIA H200');
const a100 = { ...gpu('NVIDIA A100-SXM4-80GB'), architecture: 'ampere' };

describe('local workers per GPU', () => {
  it('one worker per hardware GPU, worker i on --gpu i; software adapters do not count', () => {
    const plan = planLocalWorkers({ backend: 'auto', cores: 16, adapters: [llvmpipe, a100, h200] });
    expect(plan).toMatchObject({ workers: 2, gpus: [0, 1] });
    expect(plan.reason).toMatch(/^2 GPUs \(NVIDIA A100.*; NVIDIA H200.*\): one worker per GPU \(2\)/);
    expect(plan.warning).toBeUndefined();
    expect(planLocalWorkers({ backend: 'webgpu', cores: 16, adapters: [h200] })).toMatchObject({
      workers: 1,
      gpus: [0],
    });
  });

  it('without a hardware adapter, one per core as before (a software adapter alone is no GPU)', () => {
    for (const adapters of [undefined, [], [llvmpipe]]) {
      expect(planLocalWorkers({ backend: 'auto', cores: 6, adapters })).toMatchObject({
        workers: 6,
        gpus: Array(6).fill(undefined),
      });
    }
    expect(planLocalWorkers({ backend: 'auto', cores: 6, adapters: [llvmpipe] }).reason).toBe(
      'no hardware WebGPU adapter: one worker per core (6)',
    );
  });

  it('backends that cannot use a WebGPU adapter ignore GPUs, and train does not probe for them', () => {
    for (const backend of ['wasm', 'native', 'tensorflow', 'cpu', 'synthetic'] as const) {
      expect(usesWebGpu(backend)).toBe(false);
      expect(planLocalWorkers({ backend, cores: 4, adapters: [h200, a100] })).toMatchObject({
        workers: 4,
        gpus: [undefined, undefined, undefined, undefined],
      });
    }
    expect(usesWebGpu('auto') && usesWebGpu('webgpu')).toBe(true);
  });

  it('--workers wins over the default and is spread over the GPUs round-robin', () => {
    expect(
      planLocalWorkers({ backend: 'auto', cores: 16, adapters: [a100, h200], workers: 5 }),
    ).toMatchObject({ workers: 5, gpus: [0, 1, 0, 1, 0] });
    expect(planLocalWorkers({ backend: 'auto', cores: 16, adapters: [llvmpipe], workers: 3 })).toMatchObject({
      workers: 3,
      gpus: [undefined, undefined, undefined],
    });
  });

  it('--gpu N pins every worker to that adapter, one worker unless --workers says more', () => {
    expect(planLocalWorkers({ backend: 'webgpu', cores: 16, adapters: [a100, h200], gpu: 1 })).toMatchObject({
      workers: 1,
      gpus: [1],
    });
    expect(planLocalWorkers({ backend: 'webgpu', cores: 16, gpu: 0, workers: 2 })).toMatchObject({
      workers: 2,
      gpus: [0, 0],
    });
  });

  it('identical GPUs cannot be told apart by Dawn: one worker each still, no --gpu, and a warning that says what to do', () => {
    const plan = planLocalWorkers({ backend: 'auto', cores: 64, adapters: [h200, h200, h200, h200] });
    expect(plan).toMatchObject({ workers: 4, gpus: [undefined, undefined, undefined, undefined] });
    expect(plan.warning).toMatch(/identical.*Dawn selects adapters by name only.*NVIDIA_VISIBLE_DEVICES/);
  });

  it('this machine: Dawn lists the software adapter, which makes no GPU worker', async () => {
    const adapters = await seenAdapters();
    expect(adapters.length).toBeGreaterThan(0);
    expect(adapters.every((a) => a.software)).toBe(true);
    expect(planLocalWorkers({ backend: 'auto', cores: availableParallelism(), adapters }).workers).toBe(
      availableParallelism(),
    );
  });
});
