/** The cluster trains for real: a full epoch of MNIST on two workers reaches the published accuracy. */
import { describe, expect, it } from 'vitest';
import { expectOk, run, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();

describe('end to end', () => {
  it('mnist-small, 2 workers, 1 epoch of the real MNIST: at least 98% test accuracy', async () => {
    const summary = expectOk(
      await run([
        'train',
        '--model',
        'mnist-small',
        '--workers',
        '2',
        '--backend',
        'wasm',
        '--epochs',
        '1',
        '--batch-size',
        '32',
        '--micro-batch',
        '16',
        '--out',
        `${dir}/run`,
        '--json',
      ]),
    );
    expect(summary).toMatchObject({
      model: 'mnist-small',
      backend: 'wasm',
      workers: 2,
      transport: 'ws',
      steps: 1875,
      epochs: 1,
      samples: 60000,
    });
    expect(summary.test_accuracy).toBeGreaterThanOrEqual(0.98);
    expect(summary.rejected_frames).toEqual({});
  }, 300_000);
});
