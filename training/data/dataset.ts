/**
 * The in-memory dataset every loader produces, and the operations training needs on it.
 *
 * Pixels stay raw uint8 (60000 MNIST images are 47 MB this way, 188 MB as float32) and are
 * normalised only when a batch is gathered, which is also where shuffling happens.
 */
import { createHash } from 'node:crypto';
import { permutation } from '../rng.js';

export const IMAGE_HEIGHT = 28;
export const IMAGE_WIDTH = 28;
export const PIXELS_PER_IMAGE = IMAGE_HEIGHT * IMAGE_WIDTH;
export const NUM_CLASSES = 10;

/** The MNIST training-set statistics everyone normalises with, so pretrained weights transfer. */
const MNIST_MEAN = 0.1307;
const MNIST_STD = 0.3081;

/**
 * The size of every image of a data set. Our models take MNIST's 28×28 (mnist.ts checks files against it).
 */
export interface ImageShape {
  readonly height: number;
  readonly width: number;
}
export const MNIST_SHAPE: ImageShape = { height: IMAGE_HEIGHT, width: IMAGE_WIDTH };

export interface Dataset extends ImageShape {
  /** Where it came from, for logs; not part of the fingerprint. */
  readonly name: string;
  /**
   * count × pixelsPerImage raw pixels, image after image, row-major. Treat as immutable: it may be shared.
   */
  readonly images: Uint8Array;
  /** One class 0..9 per image, or null for unlabelled data (Kaggle test.csv). */
  readonly labels: Uint8Array | null;
  readonly count: number;
  /** height × width. */
  readonly pixelsPerImage: number;
}

/**
 * Wraps already-validated arrays as a Dataset, checking only that the sizes agree (a mismatch
 * here is a bug in a loader, not bad input, hence RangeError).
 */
export function createDataset(
  name: string,
  images: Uint8Array,
  labels: Uint8Array | null,
  shape: ImageShape = MNIST_SHAPE,
): Dataset {
  const { height, width } = shape;
  const pixelsPerImage = height * width;
  if (!(Number.isInteger(pixelsPerImage) && pixelsPerImage > 0))
    throw new RangeError(`${name}: images of ${height}x${width} pixels`);
  if (images.length % pixelsPerImage !== 0) {
    throw new RangeError(
      `${name}: ${images.length} pixel bytes is not a whole number of ${height}x${width} images`,
    );
  }
  const count = images.length / pixelsPerImage;
  if (labels !== null && labels.length !== count) {
    throw new RangeError(`${name}: ${count} images but ${labels.length} labels`);
  }
  return { name, images, labels, count, height, width, pixelsPerImage };
}

// Rounded to float32 once here so every batch holds bit-identical values on every worker.
const NORMALIZED = new Float32Array(256);
for (let p = 0; p < 256; p++) NORMALIZED[p] = (p / 255 - MNIST_MEAN) / MNIST_STD;

/** The normalised value of one raw pixel, as normalizeInto would write it. */
export function normalizePixel(p: number): number {
  return NORMALIZED[p];
}

/**
 * Gathers images `indices` into `out` as normalised float32, image after image, and returns
 * the filled prefix of `out`. `out` may be longer than needed so one buffer can serve the short
 * last batch of an epoch.
 */
export function normalizeInto(
  data: Pick<Dataset, 'images' | 'pixelsPerImage'>,
  indices: ArrayLike<number>,
  out: Float32Array,
): Float32Array {
  const { images, pixelsPerImage } = data;
  const n = indices.length;
  const needed = n * pixelsPerImage;
  if (out.length < needed) {
    throw new RangeError(`normalizeInto: out holds ${out.length} floats, ${n} images need ${needed}`);
  }
  const available = images.length / pixelsPerImage;
  const table = NORMALIZED;
  for (let i = 0; i < n; i++) {
    const index = indices[i];
    if (!(index >= 0 && index < available) || !Number.isInteger(index)) {
      throw new RangeError(`normalizeInto: index ${index} outside 0..${available - 1}`);
    }
    const src = index * pixelsPerImage;
    const dst = i * pixelsPerImage;
    for (let j = 0; j < pixelsPerImage; j++) out[dst + j] = table[images[src + j]];
  }
  return out.subarray(0, needed);
}

/** The labels of `indices`, in that order, into `out` if given (must be long enough). */
export function gatherLabels(labels: Uint8Array, indices: ArrayLike<number>, out?: Uint8Array): Uint8Array {
  const n = indices.length;
  const target = out ?? new Uint8Array(n);
  if (target.length < n) throw new RangeError(`gatherLabels: out holds ${target.length}, need ${n}`);
  for (let i = 0; i < n; i++) {
    const index = indices[i];
    if (!(index >= 0 && index < labels.length) || !Number.isInteger(index)) {
      throw new RangeError(`gatherLabels: index ${index} outside 0..${labels.length - 1}`);
    }
    target[i] = labels[index];
  }
  return target.subarray(0, n);
}

/** The epoch order: a permutation of 0..count-1 that depends only on `seed`. */
export function shuffledIndices(count: number, seed: number): Uint32Array {
  return permutation(count, seed);
}

/** A new Dataset holding copies of the given samples, in the given order. */
export function subset(dataset: Dataset, indices: ArrayLike<number>, name: string): Dataset {
  const { pixelsPerImage } = dataset;
  const images = new Uint8Array(indices.length * pixelsPerImage);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i];
    if (!(index >= 0 && index < dataset.count) || !Number.isInteger(index)) {
      throw new RangeError(`subset: index ${index} outside 0..${dataset.count - 1}`);
    }
    const src = index * pixelsPerImage;
    images.set(dataset.images.subarray(src, src + pixelsPerImage), i * pixelsPerImage);
  }
  const labels = dataset.labels === null ? null : gatherLabels(dataset.labels, indices);
  return createDataset(name, images, labels, dataset);
}

export interface ValidationSplit {
  readonly train: Dataset;
  /** null when the fraction is 0 (or rounds to no samples). */
  readonly validation: Dataset | null;
}

/**
 * Holds out round(count * fraction) samples chosen by `seed`. Both parts keep the original
 * sample order, so the split depends on the seed alone and every process that runs it with the
 * same data and seed gets the same two datasets (compare with `fingerprint`).
 */
export function splitValidation(dataset: Dataset, fraction: number, seed: number): ValidationSplit {
  if (!(fraction >= 0 && fraction < 1)) {
    throw new RangeError(`splitValidation: fraction must be in [0, 1), got ${fraction}`);
  }
  const held = Math.round(dataset.count * fraction);
  if (held === 0) return { train: dataset, validation: null };
  if (held >= dataset.count) {
    throw new RangeError(
      `splitValidation: fraction ${fraction} of ${dataset.count} samples leaves nothing to train on`,
    );
  }
  const order = permutation(dataset.count, seed);
  const validationIndices = order.slice(0, held).sort();
  const trainIndices = order.slice(held).sort();
  return {
    train: subset(dataset, trainIndices, `${dataset.name}/train`),
    validation: subset(dataset, validationIndices, `${dataset.name}/validation`),
  };
}

// Bump if the encoding below changes, so old and new fingerprints can never collide.
const FINGERPRINT_TAG = 'gradfleet-dataset-v1\0';

/**
 * Hex SHA-256 of the dataset's content: count, image size, whether it is labelled, pixels and
 * labels (not the name). Coordinator and workers compare these to prove they train on identical
 * data before exchanging gradients.
 */
export function fingerprint(dataset: Dataset): string {
  const header = Buffer.alloc(FINGERPRINT_TAG.length + 13);
  let offset = header.write(FINGERPRINT_TAG, 'latin1');
  offset = header.writeUInt32LE(dataset.count, offset);
  offset = header.writeUInt32LE(dataset.height, offset);
  offset = header.writeUInt32LE(dataset.width, offset);
  header.writeUInt8(dataset.labels === null ? 0 : 1, offset);
  const hash = createHash('sha256').update(header).update(dataset.images);
  if (dataset.labels !== null) hash.update(dataset.labels);
  return hash.digest('hex');
}

/** How many samples of each class 0..9; throws for an unlabelled dataset. */
export function labelCounts(dataset: Dataset): number[] {
  if (dataset.labels === null) throw new Error(`labelCounts: ${dataset.name} has no labels`);
  const counts = new Array<number>(NUM_CLASSES).fill(0);
  for (const label of dataset.labels) {
    if (label >= NUM_CLASSES) throw new RangeError(`labelCounts: ${dataset.name} has label ${label}`);
    counts[label]++;
  }
  return counts;
}
