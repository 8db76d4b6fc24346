/**
 * trainLocal, the one-process loop: the whole-epoch ≥ 98% claim is the cluster's to prove
 * (test/cluster/accuracy.test.ts, the real path users run); here a fast check that the loop steps,
 * learns and accounts for every test sample.
 */
import { describe, expect, it } from 'vitest';
import { loadMnist, subset } from '../../training/data/index.js';
import { getModel } from '../../training/models/zoo.js';
import { trainLocal } from '../../training/train-local.js';
import { useBackend } from '../helpers/backends.js';

const first = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('training mnist-small in one process', () => {
  it('steps through an epoch of real MNIST images and learns well above chance', async () => {
    await useBackend('wasm');
    const steps: number[] = [];
    const result = await trainLocal({
      model: getModel('mnist-small'),
      train: subset(loadMnist('train'), first(3200), 'train'),
      test: subset(loadMnist('test'), first(1000), 'test'),
      epochs: 1,
      batchSize: 32,
      seed: 1,
      onStep: (s) => steps.push(s.step),
    });
    expect(result.steps).toBe(100);
    expect(result.samples).toBe(3200);
    expect(steps).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const [epoch] = result.history;
    expect(epoch.test!.count).toBe(1000);
    console.log(`trainLocal: 3200 samples, test accuracy ${epoch.test!.accuracy}, loss ${epoch.test!.loss}`);
    expect(epoch.test!.accuracy).toBeGreaterThanOrEqual(0.8);
    // The confusion matrix accounts for every test sample.
    expect(epoch.test!.confusion.flat().reduce((a, b) => a + b, 0)).toBe(1000);
  }, 120_000);
});
