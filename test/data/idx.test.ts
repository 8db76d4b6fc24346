import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { fingerprint } from '../../training/data/dataset.js';
import { DataError } from '../../training/data/errors.js';
import { encodeIdx, parseIdx, readIdxImages, readIdxLabels } from '../../training/data/idx.js';
import { defaultMnistDir, loadMnist, loadMnistFiles, mnistFileNames } from '../../training/data/mnist.js';
import { subDir, syntheticSamples, tempDir, writeIdxImages, writeIdxLabels } from './helpers.js';

/** Runs `fn` and returns the DataError it throws, failing the test if it throws anything else. */
function dataErrorOf(fn: () => unknown): DataError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DataError);
    return err as DataError;
  }
  throw new Error('expected a DataError, nothing was thrown');
}

describe('parseIdx', () => {
  it('reads header dims and data of any rank', () => {
    const data = Uint8Array.from({ length: 24 }, (_, i) => i);
    const parsed = parseIdx(encodeIdx([2, 3, 4], data), 'x');
    expect(parsed.dims).toEqual([2, 3, 4]);
    expect(Array.from(parsed.data)).toEqual(Array.from(data));
    // Big-endian sizes: 0x0102 must not read as 0x0201.
    const big = parseIdx(encodeIdx([0x0102], new Uint8Array(0x0102)), 'x');
    expect(big.dims).toEqual([258]);
  });

  it('rejects a wrong dtype byte', () => {
    const bytes = encodeIdx([3], new Uint8Array(3));
    bytes[2] = 0x0d; // float
    expect(dataErrorOf(() => parseIdx(bytes, 'f.idx')).message).toMatch(/^f\.idx: unsupported dtype 0x0d/);
  });

  it('rejects a zero-sized dimension', () => {
    const bytes = encodeIdx([1, 28, 28], new Uint8Array(784));
    bytes.set([0, 0, 0, 0], 8); // rows = 0
    expect(dataErrorOf(() => parseIdx(bytes, 'z')).message).toMatch(/z: dimension 1 has size 0/);
  });

  it('rejects a header cut short', () => {
    const bytes = encodeIdx([1, 28, 28], new Uint8Array(784)).subarray(0, 10);
    expect(dataErrorOf(() => parseIdx(bytes, 'h')).message).toMatch(/h: truncated header/);
  });
});

describe('IDX files', () => {
  const dir = tempDir();
  const { images, labels } = syntheticSamples(50, 1);
  const imagesPath = join(dir, 'good-images-idx3-ubyte');
  const labelsPath = join(dir, 'good-labels-idx1-ubyte');
  writeIdxImages(imagesPath, images);
  writeIdxLabels(labelsPath, labels);

  it('reads what was written', () => {
    const read = readIdxImages(imagesPath);
    expect([read.count, read.height, read.width]).toEqual([50, 28, 28]);
    expect(Buffer.from(read.pixels).equals(Buffer.from(images))).toBe(true);
    expect(Buffer.from(readIdxLabels(labelsPath)).equals(Buffer.from(labels))).toBe(true);
  });

  it('gives identical results gzipped, detected by content not name', () => {
    const gzNoSuffix = join(dir, 'gz-images-no-suffix');
    writeFileSync(gzNoSuffix, gzipSync(readFileSync(imagesPath)));
    const read = readIdxImages(gzNoSuffix);
    expect(Buffer.from(read.pixels).equals(Buffer.from(images))).toBe(true);
  });

  it('gives identical results for the real MNIST test set gzipped in another dir', () => {
    const gzDir = subDir(dir, 'gz-copy');
    const names = mnistFileNames('test');
    for (const name of [names.images, names.labels]) {
      writeFileSync(
        join(gzDir, `${name}.gz`),
        gzipSync(readFileSync(join(defaultMnistDir(), name)), { level: 1 }),
      );
    }
    const fromGz = loadMnist('test', gzDir);
    const fromRaw = loadMnist('test');
    expect(fromGz.count).toBe(10000);
    expect(fingerprint(fromGz)).toBe(fingerprint(fromRaw));
  });

  it('rejects a truncated images file, saying by how much', () => {
    const path = join(dir, 'short-images-idx3-ubyte');
    writeFileSync(path, readFileSync(imagesPath).subarray(0, 16 + 50 * 784 - 1000));
    expect(dataErrorOf(() => readIdxImages(path)).message).toBe(
      `${path}: truncated: header says 50x28x28 = 39200 pixel bytes, file has 38200`,
    );
  });

  it('rejects trailing bytes', () => {
    const path = join(dir, 'long-labels-idx1-ubyte');
    writeFileSync(path, Buffer.concat([readFileSync(labelsPath), Buffer.from([1, 2, 3])]));
    const message = dataErrorOf(() => readIdxLabels(path)).message;
    expect(message).toContain(path);
    expect(message).toMatch(/3 trailing bytes: header says 50 = 50 data bytes, file has 53/);
  });

  it('rejects a file that is not IDX at all', () => {
    const path = join(dir, 'notidx-images-idx3-ubyte');
    writeFileSync(path, Buffer.from(`P5\n28 28\n255\n${'x'.repeat(800)}`));
    const message = dataErrorOf(() => readIdxImages(path)).message;
    expect(message).toContain(path);
    expect(message).toMatch(/bad magic 0x50350a32: not an IDX file/);
  });

  it('rejects a labels file where images are expected (wrong magic)', () => {
    const message = dataErrorOf(() => readIdxImages(labelsPath)).message;
    expect(message).toContain(labelsPath);
    expect(message).toMatch(/wrong magic 0x00000801: 1 dimension\(s\), expected 3 \(magic 0x00000803\)/);
  });

  it('rejects images that are not 28x28 when loading for our models', () => {
    const path = join(dir, 'big-images-idx3-ubyte');
    writeIdxImages(path, new Uint8Array(2 * 32 * 32), 32, 32);
    expect(readIdxImages(path).height).toBe(32); // the reader itself is general
    expect(dataErrorOf(() => loadMnistFiles(path, null)).message).toBe(
      `${path}: images are 32x32, our models need 28x28`,
    );
  });

  it('rejects image and label counts that differ, naming both files', () => {
    const path = join(dir, 'fewer-labels-idx1-ubyte');
    writeIdxLabels(path, labels.subarray(0, 49));
    const message = dataErrorOf(() => loadMnistFiles(imagesPath, path)).message;
    expect(message).toContain(imagesPath);
    expect(message).toContain(path);
    expect(message).toMatch(/count mismatch: 50 images but 49 labels/);
  });

  it('rejects label 10', () => {
    const path = join(dir, 'ten-labels-idx1-ubyte');
    const bad = labels.slice();
    bad[17] = 10;
    writeIdxLabels(path, bad);
    expect(dataErrorOf(() => loadMnistFiles(imagesPath, path)).message).toBe(
      `${path}: label 10 at index 17 is outside 0..9`,
    );
  });

  it('rejects a corrupt gzip stream, naming the file', () => {
    const gz = gzipSync(readFileSync(imagesPath));
    const corrupt = join(dir, 'corrupt-images-idx3-ubyte.gz');
    const flipped = Buffer.from(gz);
    for (let i = 20; i < 60; i++) flipped[i] ^= 0xff;
    writeFileSync(corrupt, flipped);
    expect(dataErrorOf(() => readIdxImages(corrupt)).message).toMatch(
      new RegExp(`^${escapeRegExp(corrupt)}: corrupt gzip stream: `),
    );
    const cut = join(dir, 'cut-images-idx3-ubyte.gz');
    writeFileSync(cut, gz.subarray(0, gz.length >> 1));
    expect(dataErrorOf(() => readIdxImages(cut)).message).toMatch(
      new RegExp(`^${escapeRegExp(cut)}: corrupt gzip stream: `),
    );
  });

  it('reports a missing file as a DataError', () => {
    const path = join(dir, 'absent-images-idx3-ubyte');
    expect(dataErrorOf(() => readIdxImages(path)).message).toBe(`${path}: no such file`);
  });

  it('loadMnist with a dir missing the files names the file it wanted', () => {
    const empty = subDir(dir, 'empty');
    const message = dataErrorOf(() => loadMnist('train', empty)).message;
    expect(message).toContain(join(empty, 'train-images-idx3-ubyte'));
    expect(message).toMatch(/no such file/);
  });

  it('copies work as a dir of raw files too', () => {
    const rawDir = subDir(dir, 'raw-copy');
    const names = mnistFileNames('test');
    for (const name of [names.images, names.labels])
      copyFileSync(join(defaultMnistDir(), name), join(rawDir, name));
    expect(loadMnist('test', rawDir).count).toBe(10000);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
