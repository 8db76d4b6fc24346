import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createDataset, fingerprint } from '../../training/data/dataset.js';
import { DataError } from '../../training/data/errors.js';
import { writeKaggleCsv } from '../../training/data/kaggle-csv.js';
import { loadDataset } from '../../training/data/load.js';
import { MAX_DATA_FILE_BYTES, readDataFile } from '../../training/data/read-bytes.js';
import { defaultMnistDir, labelsPathFor, loadMnist } from '../../training/data/mnist.js';
import { subDir, syntheticSamples, tempDir, writeIdxImages, writeIdxLabels } from './helpers.js';

describe('loadDataset', () => {
  const dir = tempDir();

  it('loads the package MNIST test split by name', () => {
    const test = loadDataset('mnist:test');
    expect(test.count).toBe(10000);
    expect(test.name).toBe('mnist:test');
    expect(fingerprint(test)).toBe(fingerprint(loadMnist('test')));
  });

  it('loads an IDX images path with the labels file found beside it', () => {
    const copy = subDir(dir, 'copy');
    for (const name of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) {
      copyFileSync(join(defaultMnistDir(), name), join(copy, name));
    }
    const images = join(copy, 't10k-images-idx3-ubyte');
    expect(labelsPathFor(images)).toBe(join(copy, 't10k-labels-idx1-ubyte'));
    expect(fingerprint(loadDataset(images))).toBe(fingerprint(loadMnist('test')));
  });

  it('loads an IDX images file without a labels file as unlabelled', () => {
    const alone = subDir(dir, 'alone');
    const { images } = syntheticSamples(4, 2);
    const path = join(alone, 'extra-images-idx3-ubyte');
    writeIdxImages(path, images);
    const data = loadDataset(path);
    expect(data.labels).toBeNull();
    expect(data.count).toBe(4);
  });

  it('finds a gzipped labels file beside a raw images file', () => {
    const mixed = subDir(dir, 'mixed');
    const { images, labels } = syntheticSamples(3, 4);
    writeIdxImages(join(mixed, 'x-images.idx3-ubyte'), images);
    const raw = join(mixed, 'raw-labels');
    writeIdxLabels(raw, labels);
    const gzipped = join(mixed, 'x-labels.idx1-ubyte.gz');
    writeFileSync(gzipped, gzipSync(readFileSync(raw)));
    expect([...readFileSync(gzipped).subarray(0, 2)]).toEqual([0x1f, 0x8b]); // really gzip
    const data = loadDataset(join(mixed, 'x-images.idx3-ubyte'));
    expect(Array.from(data.labels!)).toEqual(Array.from(labels));
  });

  it('loads a Kaggle CSV by path', () => {
    const { images, labels } = syntheticSamples(5, 3);
    const path = join(dir, 'train.csv');
    writeKaggleCsv(path, createDataset('t', images, labels));
    expect(Array.from(loadDataset(path).labels!)).toEqual(Array.from(labels));
  });

  it('gives clear DataErrors for a missing file, a directory and an unknown split', () => {
    const missing = join(dir, 'nope.csv');
    expect(() => loadDataset(missing)).toThrow(DataError);
    expect(() => loadDataset(missing)).toThrow(`${missing}: no such file`);
    const folder = join(dir, 'folder');
    mkdirSync(folder);
    expect(() => loadDataset(folder)).toThrow(`${folder}: is not a file`);
    expect(() => loadDataset('mnist:validation')).toThrow(/unknown MNIST split "validation"/);
  });
});

describe('gzip bombs', () => {
  it('a file that decompresses past the cap is refused by name, before the whole output exists', () => {
    const dir = tempDir();
    const bomb = join(dir, 'bomb-images-idx3-ubyte.gz');
    writeFileSync(bomb, gzipSync(Buffer.alloc(64 * 1024 * 1024))); // 64 MiB of zeros in ~64 KiB
    expect(() => readDataFile(bomb, 16 * 1024 * 1024)).toThrow(
      /bomb-images-idx3-ubyte\.gz: decompresses to more than 16777216 bytes: refused/,
    );
    expect(readDataFile(bomb).length).toBe(64 * 1024 * 1024); // under the real cap: read as usual
    expect(MAX_DATA_FILE_BYTES).toBeGreaterThanOrEqual(1024 ** 3);
  });
});
