import { describe, expect, it } from 'vitest';
import { loadMnist } from '../../training/data/index.js';
import { getModel } from '../../training/models/zoo.js';
import { trainLocal } from '../../training/train-local.js';
import { useBackend } from '../helpers/backends.js';

describe('training mnist-small in one process', () => {
  it('reaches ≥ 98% test accuracy after one epoch on the real MNIST files', async () => {
    await useBackend('wasm');
    const steps: number[] = [];
    const result = trainLocal({
      model: getModel('mnist-small'), train: loadMnist('train'), test: loadMnist('test'),
      epochs: 1, batchSize: 32, seed: 1, onStep: (s) => steps.push(s.step),
    });
    expect(result.steps).toBe(1875);
    expect(result.samples).toBe(60_000);
    expect(steps.length).toBe(1875);
    const [epoch] = result.history;
    expect(epoch.test!.count).toBe(10_000);
    expect(epoch.test!.accuracy).toBeGreaterThanOrEqual(0.98);
    expect(epoch.test!.loss).toBeLessThan(0.08);
    // The confusion matrix accounts for every test sample.
    expect(epoch.test!.confusion.flat().reduce((a, b) => a + b, 0)).toBe(10_000);
  }, 300_000);
});
