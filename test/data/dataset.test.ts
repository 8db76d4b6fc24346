import { describe, expect, it } from 'vitest';
import {
  createDataset,
  fingerprint,
  gatherLabels,
  labelCounts,
  normalizeInto,
  normalizePixel,
  shuffledIndices,
  splitValidation,
  subset,
  type Dataset,
} from '../../training/data/dataset.js';
import { syntheticSamples } from './helpers.js';

function synthetic(count: number, seed = 7): Dataset {
  const { images, labels } = syntheticSamples(count, seed);
  return createDataset(`synthetic-${count}`, images, labels);
}

/** The pixels of sample `i`, so tests can follow a sample through a split by content. */
function imageKey(dataset: Dataset, i: number): string {
  return Buffer.from(dataset.images.subarray(i * 784, (i + 1) * 784)).toString('base64');
}

describe('normalisation', () => {
  it('maps 0 and 255 to the MNIST-standardised values', () => {
    expect(normalizePixel(0)).toBeCloseTo(-0.4242129, 6);
    expect(normalizePixel(255)).toBeCloseTo(2.8214867, 6);
    expect(normalizePixel(128)).toBeCloseTo((128 / 255 - 0.1307) / 0.3081, 6);
  });

  it('gathers the requested images in order into a float batch', () => {
    const images = new Uint8Array(3 * 784);
    images.fill(0, 0, 784);
    images.fill(255, 784, 2 * 784);
    for (let j = 0; j < 784; j++) images[2 * 784 + j] = j % 256;
    const out = new Float32Array(4 * 784).fill(99);
    const batch = normalizeInto({ images, pixelsPerImage: 784 }, Uint32Array.of(2, 0, 1), out);
    expect(batch.length).toBe(3 * 784);
    expect(batch[0]).toBeCloseTo((0 / 255 - 0.1307) / 0.3081, 6);
    expect(batch[300]).toBeCloseTo((44 / 255 - 0.1307) / 0.3081, 6);
    expect(batch[784]).toBeCloseTo(-0.4242129, 6);
    expect(batch[2 * 784 + 783]).toBeCloseTo(2.8214867, 6);
    expect(out[3 * 784]).toBe(99); // the unused tail is left alone
  });

  it('refuses an out-of-range index or a too-small output', () => {
    const images = new Uint8Array(2 * 784);
    const data = { images, pixelsPerImage: 784 };
    expect(() => normalizeInto(data, [2], new Float32Array(784))).toThrow(RangeError);
    expect(() => normalizeInto(data, [0, 1], new Float32Array(784))).toThrow(RangeError);
  });

  it('gathers labels', () => {
    expect(Array.from(gatherLabels(Uint8Array.of(5, 6, 7), [2, 2, 0]))).toEqual([7, 7, 5]);
  });
});

describe('shuffledIndices', () => {
  it('is a permutation, the same for the same seed and different for another', () => {
    const a = shuffledIndices(1000, 42);
    expect(Array.from(a).sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(Array.from(shuffledIndices(1000, 42))).toEqual(Array.from(a));
    expect(Array.from(shuffledIndices(1000, 43))).not.toEqual(Array.from(a));
    expect(Array.from(a)).not.toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});

describe('splitValidation', () => {
  const data = synthetic(500);

  it('holds out the requested fraction, disjoint and covering the data', () => {
    const { train, validation } = splitValidation(data, 0.1, 3);
    expect(validation).not.toBeNull();
    expect(train.count).toBe(450);
    expect(validation!.count).toBe(50);
    const all = new Map<string, number>();
    for (let i = 0; i < data.count; i++) all.set(imageKey(data, i), data.labels![i]);
    expect(all.size).toBe(500); // random images are distinct, so content identifies a sample
    const seen = new Set<string>();
    for (const part of [train, validation!]) {
      for (let i = 0; i < part.count; i++) {
        const key = imageKey(part, i);
        expect(seen.has(key)).toBe(false);
        seen.add(key);
        expect(part.labels![i]).toBe(all.get(key)); // labels travel with their images
      }
    }
    expect(seen.size).toBe(500);
  });

  it('is deterministic by seed', () => {
    const a = splitValidation(data, 0.2, 11);
    const b = splitValidation(data, 0.2, 11);
    const c = splitValidation(data, 0.2, 12);
    expect(fingerprint(a.validation!)).toBe(fingerprint(b.validation!));
    expect(fingerprint(a.train)).toBe(fingerprint(b.train));
    expect(fingerprint(a.validation!)).not.toBe(fingerprint(c.validation!));
  });

  it('gives no validation set for fraction 0 and rejects fractions outside [0, 1)', () => {
    const { train, validation } = splitValidation(data, 0, 1);
    expect(validation).toBeNull();
    expect(train.count).toBe(500);
    expect(() => splitValidation(data, 1, 1)).toThrow(RangeError);
    expect(() => splitValidation(data, -0.1, 1)).toThrow(RangeError);
  });
});

describe('fingerprint', () => {
  it('depends on every pixel and label, and on labelled vs unlabelled, not on the name', () => {
    const data = synthetic(20);
    const base = fingerprint(data);
    expect(fingerprint(createDataset('other name', data.images, data.labels))).toBe(base);

    const pixels = data.images.slice();
    pixels[19 * 784 + 783] ^= 1;
    expect(fingerprint(createDataset('x', pixels, data.labels))).not.toBe(base);

    const labels = data.labels!.slice();
    labels[19] = (labels[19] + 1) % 10;
    expect(fingerprint(createDataset('x', data.images, labels))).not.toBe(base);

    expect(fingerprint(createDataset('x', data.images, null))).not.toBe(base);
  });

  it('differs for a subset in another order', () => {
    const data = synthetic(3);
    expect(fingerprint(subset(data, [0, 1, 2], 'same'))).toBe(fingerprint(data));
    expect(fingerprint(subset(data, [1, 0, 2], 'swapped'))).not.toBe(fingerprint(data));
  });
});

describe('labelCounts', () => {
  it('counts each class and refuses unlabelled data', () => {
    const data = createDataset('x', new Uint8Array(5 * 784), Uint8Array.of(3, 3, 9, 0, 3));
    expect(labelCounts(data)).toEqual([1, 0, 0, 3, 0, 0, 0, 0, 0, 1]);
    expect(() => labelCounts(createDataset('y', new Uint8Array(784), null))).toThrow(/no labels/);
  });
});

describe('image shape', () => {
  it('is a property of the data set: a 14x14 set keeps its shape through normalisation and subset', () => {
    const shape = { height: 14, width: 14 };
    const images = new Uint8Array(3 * 196).map((_, i) => i % 256);
    const data = createDataset('small-images', images, Uint8Array.of(1, 2, 3), shape);
    expect(data).toMatchObject({ count: 3, height: 14, width: 14, pixelsPerImage: 196 });
    const batch = normalizeInto(data, [2], new Float32Array(196));
    expect(batch[0]).toBe(normalizePixel(images[2 * 196]));
    const picked = subset(data, [2, 0], 'picked');
    expect(picked).toMatchObject({ count: 2, height: 14, width: 14 });
    expect([...picked.images.subarray(0, 196)]).toEqual([...images.subarray(392, 588)]);
    expect(() => createDataset('ragged', new Uint8Array(200), null, shape)).toThrow(/14x14/);
  });
});
