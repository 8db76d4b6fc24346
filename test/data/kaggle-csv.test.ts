import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createDataset, fingerprint } from '../../training/data/dataset.js';
import { DataError } from '../../training/data/errors.js';
import {
  formatKaggleCsv,
  loadKaggleCsv,
  parseKaggleCsv,
  writeKaggleCsv,
  writeSubmission,
} from '../../training/data/kaggle-csv.js';
import { loadMnist } from '../../training/data/mnist.js';
import { syntheticSamples, tempDir } from './helpers.js';

const PIXEL_HEADER = Array.from({ length: 784 }, (_, i) => `pixel${i}`).join(',');
const TRAIN_HEADER = `label,${PIXEL_HEADER}`;

/** A train.csv row: `label` then 784 pixels, all zero except `pixel[at] = value`. */
function row(label: number | string | null, at = 0, value: number | string = 0): string {
  const pixels: (number | string)[] = new Array(784).fill(0);
  pixels[at] = value;
  return (label === null ? '' : `${label},`) + pixels.join(',');
}

function parse(text: string): ReturnType<typeof parseKaggleCsv> {
  return parseKaggleCsv(Buffer.from(text, 'latin1'), 'train.csv');
}

function errorOf(text: string): string {
  try {
    parse(text);
  } catch (err) {
    expect(err).toBeInstanceOf(DataError);
    return (err as Error).message;
  }
  throw new Error('expected a DataError');
}

describe('Kaggle CSV', () => {
  const dir = tempDir();

  it('parses a hand-written train.csv (CRLF, no final newline)', () => {
    const data = parse([TRAIN_HEADER, row(7, 0, 255), row(0, 783, 9)].join('\r\n'));
    expect(data.count).toBe(2);
    expect(Array.from(data.labels!)).toEqual([7, 0]);
    expect(data.images[0]).toBe(255);
    expect(data.images[1]).toBe(0);
    expect(data.images[784 + 783]).toBe(9);
    expect(data.images.length).toBe(2 * 784);
  });

  it('round-trips a generated train.csv and test.csv through files', () => {
    const { images, labels } = syntheticSamples(30, 5);
    const trainPath = join(dir, 'train.csv');
    const testPath = join(dir, 'test.csv');
    writeKaggleCsv(trainPath, createDataset('train', images, labels));
    writeKaggleCsv(testPath, createDataset('test', images, null));
    expect(readFileSync(trainPath, 'latin1').split('\n', 1)[0]).toBe(TRAIN_HEADER);
    expect(readFileSync(testPath, 'latin1').split('\n', 1)[0]).toBe(PIXEL_HEADER);

    const train = loadKaggleCsv(trainPath);
    expect(train.count).toBe(30);
    expect(train.name).toBe(trainPath);
    expect(Buffer.from(train.images).equals(Buffer.from(images))).toBe(true);
    expect(Buffer.from(train.labels!).equals(Buffer.from(labels))).toBe(true);

    const test = loadKaggleCsv(testPath);
    expect(test.labels).toBeNull();
    expect(Buffer.from(test.images).equals(Buffer.from(images))).toBe(true);

    const gzPath = join(dir, 'train.csv.gz');
    writeFileSync(gzPath, gzipSync(readFileSync(trainPath)));
    expect(fingerprint(loadKaggleCsv(gzPath))).toBe(fingerprint(train));
  });

  it('accepts trailing blank lines but not a blank line in the middle', () => {
    expect(parse(`${TRAIN_HEADER}\n${row(1)}\n\n\r\n`).count).toBe(1);
    expect(errorOf(`${TRAIN_HEADER}\n${row(1)}\n\n${row(2)}\n`)).toBe(
      'train.csv: line 3: blank line before the end of the file',
    );
  });

  it('names the file and 1-based line of a bad row', () => {
    const good = row(1);
    const at = (bad: string) => errorOf(`${[TRAIN_HEADER, good, good, bad, good].join('\n')}\n`);
    expect(at(row(1).replace(/,0$/, ''))).toBe(
      'train.csv: line 4: expected 785 fields (label + 784 pixels), found 784',
    );
    expect(at(`${row(1)},0`)).toBe('train.csv: line 4: expected 785 fields (label + 784 pixels), found 786');
    expect(at(row(1, 5, '1.5'))).toBe('train.csv: line 4: pixel5 = "1.5" is not an integer');
    expect(at(row(1, 5, 'x'))).toBe('train.csv: line 4: pixel5 = "x" is not an integer');
    expect(at(row(1, 5, ''))).toBe('train.csv: line 4: pixel5 is empty');
    expect(at(row(1, 783, 256))).toBe('train.csv: line 4: pixel783 = 256 is outside 0..255');
    expect(at(row(1, 2, -1))).toBe('train.csv: line 4: pixel2 = -1 is outside 0..255');
    expect(at(row(10))).toBe('train.csv: line 4: label 10 is outside 0..9');
    expect(at(`${row(1)},`)).toMatch(/^train\.csv: line 4: expected 785 fields .* found 786$/);
  });

  it('detects test.csv by its header and rejects a label column there', () => {
    const test = parse(`${PIXEL_HEADER}\n${row(null, 3, 200)}\n`);
    expect(test.labels).toBeNull();
    expect(test.images[3]).toBe(200);
    expect(errorOf(`${PIXEL_HEADER}\n${row(null)}\n${row(4)}\n`)).toBe(
      'train.csv: line 3: expected 784 fields (784 pixels), found 785',
    );
  });

  it('rejects an unknown header and a file with no rows', () => {
    expect(errorOf('id,label\n1,2\n')).toMatch(/^train\.csv: line 1: unrecognised header "id,label"/);
    expect(errorOf(`${TRAIN_HEADER}\n`)).toBe('train.csv: no data rows after the header');
  });

  it('writes the exact submission.csv Kaggle expects', () => {
    const path = join(dir, 'submission.csv');
    writeSubmission(path, Uint8Array.of(2, 0, 9));
    expect(readFileSync(path, 'utf8')).toBe('ImageId,Label\n1,2\n2,0\n3,9\n');
    expect(() => writeSubmission(path, Uint8Array.of(10))).toThrow(RangeError);
  });

  it('round-trips the real MNIST test set', () => {
    const mnist = loadMnist('test');
    const bytes = Buffer.from(formatKaggleCsv(mnist), 'latin1'); // ~18 MB, like Kaggle's files
    expect(fingerprint(parseKaggleCsv(bytes, 'train.csv'))).toBe(fingerprint(mnist));
  });
});
