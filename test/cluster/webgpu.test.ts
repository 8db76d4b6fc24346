/**
 * WebGPU workers, end to end through the CLI, on Mesa's software Vulkan adapter (installed by
 * scripts/install-test-deps.sh; without it these tests fail, never skip): training mnist-small,
 * resuming from its checkpoint, evaluating and predicting as wasm does on the same checkpoint, a
 * cluster of one wasm and one webgpu worker (both computing), `train --gpu N` naming no adapter, and
 * `bench compute` with its profile. Every process
 * must also exit by itself: a WebGPU device left referenced would keep it running.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectOk, listeningUrl, run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 256, 100);
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '32',
  '--micro-batch',
  '16',
  '--seed',
  '3',
  '--epochs',
  '2',
  '--lr',
  '3e-3',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
/** Cross-entropy of the all-equal prediction: where an untrained model starts. */
const UNTRAINED_LOSS = Math.log(10);

describe('webgpu workers', () => {
  it('train, resume, eval and predict on webgpu; eval and predict agree with wasm on the same checkpoint', async () => {
    const out = join(dir, 'webgpu');
    const first = expectOk(
      await run([
        'train',
        ...config,
        '--backend',
        'webgpu',
        '--workers',
        '1',
        '--max-steps',
        '12',
        '--out',
        out,
      ]),
    );
    expect(first).toMatchObject({ backend: 'webgpu', steps: 12, stopped: 'finished' });
    expect(first.backends['local-1']).toMatchObject({
      backend: 'webgpu',
      adapter: { vendor: 'mesa', software: true },
    });
    expect(first.test_loss).toBeLessThan(UNTRAINED_LOSS - 0.2);

    const resumed = expectOk(
      await run([
        'train',
        '--resume',
        out,
        '--backend',
        'webgpu',
        '--workers',
        '1',
        '--max-steps',
        '14',
        '--json',
      ]),
    );
    expect(resumed.steps).toBe(14);
    expect(resumed.weights_sha256).not.toBe(first.weights_sha256);
    expect(resumed.test_loss).toBeLessThan(first.test_loss);

    const evals = [];
    for (const backend of ['webgpu', 'wasm']) {
      evals.push(
        expectOk(
          await run(['eval', '--checkpoint', out, '--backend', backend, '--data', data.test, '--json']),
        ),
      );
    }
    expect(evals[0].count).toBe(100);
    expect(evals[0].accuracy).toBe(evals[1].accuracy);
    expect(evals[0].confusion).toEqual(evals[1].confusion);
    expect(Math.abs(evals[0].loss - evals[1].loss)).toBeLessThan(1e-4);

    const predictions = [];
    for (const backend of ['webgpu', 'wasm']) {
      const file = join(dir, `submission-${backend}.csv`);
      expectOk(
        await run([
          'predict',
          '--checkpoint',
          out,
          '--backend',
          backend,
          '--input',
          data.unlabelled,
          '--out',
          file,
          '--json',
        ]),
      );
      predictions.push(readFileSync(file, 'utf8'));
    }
    expect(predictions[0].split('\n').length).toBeGreaterThan(100);
    expect(predictions[0]).toBe(predictions[1]);
  }, 240_000);

  it('a cluster of one wasm worker and one webgpu worker trains to a finite, falling loss', async () => {
    const out = join(dir, 'mixed');
    const c = start([
      'coordinator',
      ...config,
      '--max-steps',
      '12',
      '--port',
      '0',
      '--no-metrics',
      '--out',
      out,
      '--min-workers',
      '2',
    ]);
    const url = await listeningUrl(c);
    const workers = [
      ['cpu-worker', 'wasm'],
      ['gpu-worker', 'webgpu'],
    ].map(([id, backend]) => start(['worker', '--connect', url, '--backend', backend, '--id', id]));
    await c.waitFor(/worker gpu-worker joined .*\(webgpu on llvmpipe/);
    const summary = expectOk(await c.done);
    expect(summary.workers).toBe(2);
    expect(summary.backend.split(',').sort()).toEqual(['wasm', 'webgpu']);
    expect(summary.backends).toEqual({
      'cpu-worker': { backend: 'wasm' },
      'gpu-worker': {
        backend: 'webgpu',
        adapter: expect.objectContaining({ vendor: 'mesa', software: true }),
      },
    });
    expect(Number.isFinite(summary.test_loss)).toBe(true);
    expect(summary.test_loss).toBeLessThan(UNTRAINED_LOSS - 0.2);
    expect(summary.accounting).toMatchObject({ duplicate_samples: 0, missing_samples: 0 });
    // Both computed: the webgpu worker's gradients are in the weights, not only its hello in the log.
    const byWorker = summary.micro_batches_by_worker as Record<string, number>;
    expect(Object.keys(byWorker).sort()).toEqual(['cpu-worker', 'gpu-worker']);
    expect(byWorker['gpu-worker']).toBeGreaterThan(0);
    expect(byWorker['cpu-worker']).toBeGreaterThan(0);
    // Every micro-batch of the 12 steps (batch 32 = 2 of 16) was computed once, by one of the two.
    expect(byWorker['gpu-worker'] + byWorker['cpu-worker']).toBe(12 * 2);
    for (const w of workers) expect((await w.done).status).toBe(0);
  }, 180_000);

  it('train --gpu N with no such hardware adapter: the local worker says which adapters there are, and the run fails', async () => {
    const r = await run([
      'train',
      ...config,
      '--backend',
      'webgpu',
      '--gpu',
      '3',
      '--worker-restarts',
      '0',
      '--max-steps',
      '2',
      '--out',
      join(dir, 'no-gpu'),
    ]);
    expect(r.status).not.toBe(0);
    // The flag reached the worker (train passes each local worker its --gpu), whose error lists what exists.
    expect(r.stderr).toMatch(
      /--gpu 3: there are 0 hardware adapters \(adapters seen: 0: llvmpipe.*\(mesa, software\)\)\)/,
    );
    expect(r.stderr).toMatch(/all 1 local workers are gone before the run finished/);
  }, 120_000);

  it('bench compute --backend webgpu --profile prints a step and where its kernel time goes', async () => {
    const r = expectOk(
      await run([
        'bench',
        'compute',
        '--backend',
        'webgpu',
        '--model',
        'mnist-small',
        '--batch',
        '8',
        '--steps',
        '2',
        '--conv-repeats',
        '1',
        '--profile',
        '--json',
      ]),
    );
    expect(r).toMatchObject({ model: 'mnist-small', backend: 'webgpu', batch: 8, steps: 2 });
    expect(r.samples_per_s).toBeGreaterThan(0);
    const kernels = (r.profile as { kernel: string; ms: number }[]).map((k) => k.kernel);
    expect(kernels).toEqual(
      expect.arrayContaining(['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'MaxPoolGrad']),
    );
    // The step's kernels are timed on the GPU (timestamp queries), not left as NaN.
    expect(r.profile.every((k: { ms: number }) => Number.isFinite(k.ms))).toBe(true);
  }, 120_000);
});
