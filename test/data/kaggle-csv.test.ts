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

/** How pandas writes a data frame: `quoting=QUOTE_ALL`, the index (no `index=False`), float pixels. */
interface PandasStyle {
  quoteAll?: boolean;
  index?: boolean;
  floats?: boolean;
  eol?: string;
}

/**
 * The text pandas' `DataFrame.to_csv` gives for these images (and labels, for train.csv): with `index` the
 * header starts with an empty name and each row with its index; `floats` is a float frame (`12.0`).
 */
function pandasCsv(images: Uint8Array, labels: Uint8Array | null, style: PandasStyle): string {
  const cell = (v: string) => (style.quoteAll ? `"${v}"` : v);
  const names = [...(labels ? ['label'] : []), ...PIXEL_HEADER.split(',')];
  const lines = [[...(style.index ? [''] : []), ...names].map(cell).join(',')];
  for (let r = 0; r < images.length / 784; r++) {
    const pixels = Array.from(images.subarray(r * 784, (r + 1) * 784), (v) =>
      style.floats ? `${v}.0` : `${v}`,
    );
    const fields = [...(style.index ? [`${r}`] : []), ...(labels ? [`${labels[r]}`] : []), ...pixels];
    lines.push(fields.map(cell).join(','));
  }
  const eol = style.eol ?? '\n';
  return lines.join(eol) + eol;
}

/** The message of the DataError that parsing `text` with `reader` throws. */
function readerError(text: string, reader: 'auto' | 'csv-parse'): string {
  try {
    parseKaggleCsv(Buffer.from(text, 'latin1'), 'train.csv', { reader });
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
  describe('files as pandas and other tools write them', () => {
    const { images, labels } = syntheticSamples(12, 7);
    const styles: [string, PandasStyle][] = [
      ['quoted (QUOTE_ALL)', { quoteAll: true }],
      ['with the unnamed index column (to_csv without index=False)', { index: true }],
      ['with float pixels (12.0)', { floats: true }],
      ['quoted, indexed and float, with CRLF', { quoteAll: true, index: true, floats: true, eol: '\r\n' }],
    ];
    for (const [what, style] of styles) {
      it(`reads train.csv and test.csv ${what} as the same data as Kaggle's layout`, () => {
        for (const labelled of [true, false]) {
          const name = labelled ? 'train' : 'test';
          const path = join(dir, `${name}-${Object.keys(style).join('-')}.csv`);
          writeFileSync(path, pandasCsv(images, labelled ? labels : null, style));
          const read = loadKaggleCsv(path);
          const expected = createDataset(path, images, labelled ? labels : null);
          expect(read.count, `${name} ${what}`).toBe(12);
          expect(fingerprint(read), `${name} ${what}`).toBe(fingerprint(expected));
          expect(read.labels === null).toBe(!labelled);
          // and gzipped, as downloads often are
          writeFileSync(`${path}.gz`, gzipSync(readFileSync(path)));
          expect(fingerprint(loadKaggleCsv(`${path}.gz`))).toBe(fingerprint(expected));
        }
      });
    }

    it('reads quoted fields holding doubled quotes and commas only where they make a valid value', () => {
      const header = `"",${TRAIN_HEADER.split(',')
        .map((n) => `"${n}"`)
        .join(',')}`;
      // The index is skipped whatever it holds, even a quoted comma or quote.
      const data = parse(`${header}\n"a,""b""",3,${row(null, 0, 7)}\n`);
      expect(Array.from(data.labels!)).toEqual([3]);
      expect(data.images[0]).toBe(7);
    });

    it('still refuses non-integral and out-of-range values, naming the line and the column', () => {
      const quoted = (text: string) =>
        text
          .split('\n')
          .map((l) =>
            l === ''
              ? l
              : l
                  .split(',')
                  .map((f) => `"${f}"`)
                  .join(','),
          )
          .join('\n');
      const indexed = (text: string) =>
        text
          .split('\n')
          .map((l, i) => (l === '' ? l : `${i === 0 ? '' : i - 1},${l}`))
          .join('\n');
      const good = row(1, 0, '12.0');
      const file = (bad: string) => `${[TRAIN_HEADER, good, good, bad, good].join('\n')}\n`;
      const cases: [string, string][] = [
        [row(1, 5, '12.5'), 'train.csv: line 4: pixel5 = "12.5" is not an integer'],
        [row(1, 5, '12.0.0'), 'train.csv: line 4: pixel5 = "12.0.0" is not an integer'],
        [row(1, 5, '1e2'), 'train.csv: line 4: pixel5 = "1e2" is not an integer'],
        [row(1, 5, '.0'), 'train.csv: line 4: pixel5 = ".0" is not an integer'],
        [row(1, 783, '256.0'), 'train.csv: line 4: pixel783 = 256.0 is outside 0..255'],
        [row(1, 2, '-1.0'), 'train.csv: line 4: pixel2 = -1.0 is outside 0..255'],
        [row('10.0'), 'train.csv: line 4: label 10.0 is outside 0..9'],
        [row('7.5'), 'train.csv: line 4: label = "7.5" is not an integer'],
      ];
      for (const [bad, message] of cases) {
        for (const reader of ['auto', 'csv-parse'] as const) {
          expect(readerError(file(bad), reader), `${bad.slice(0, 20)} (${reader})`).toBe(message);
          expect(readerError(quoted(file(bad)), reader), `quoted ${bad.slice(0, 20)}`).toBe(message);
        }
        expect(readerError(indexed(file(bad)), 'auto'), `indexed ${bad.slice(0, 20)}`).toBe(message);
        expect(readerError(quoted(indexed(file(bad))), 'auto')).toBe(message);
      }
      // A row without its index is a field short.
      const unindexed = `${[`,${TRAIN_HEADER}`, `0,${row(1)}`, row(1), `2,${row(1)}`].join('\n')}\n`;
      for (const text of [unindexed, quoted(unindexed)]) {
        expect(readerError(text, 'auto')).toBe(
          'train.csv: line 3: expected 786 fields (index + label + 784 pixels), found 785',
        );
      }
    });

    it('names the line and column of a quote that breaks the CSV', () => {
      const good = row(1);
      const file = (bad: string) => `${[TRAIN_HEADER, good, good, bad, good].join('\n')}\n`;
      expect(readerError(file(row(1, 3, '"7"x')), 'auto')).toBe(
        'train.csv: line 4: pixel3: a closing quote must be followed by a comma or the end of the line',
      );
      expect(readerError(file(row(1, 3, '7"')), 'auto')).toBe(
        'train.csv: line 4: pixel3: a double quote inside an unquoted field (quote the whole field, doubling the quote)',
      );
      expect(readerError(file(row(1, 3, '"7')), 'auto')).toBe(
        'train.csv: line 4: a quoted field is never closed (an odd number of double quotes)',
      );
      // a quoted line break is one field: the row is refused where it starts
      expect(readerError(file(row(1, 3, '"7\n8"')), 'auto')).toBe(
        'train.csv: line 4: pixel3 = "7\n8" is not an integer',
      );
      expect(readerError(`"label,${PIXEL_HEADER}\n${good}\n`, 'auto')).toBe(
        'train.csv: line 1: a quoted field is never closed (an odd number of double quotes)',
      );
    });

    it('names the layouts it accepts when the header is none of them', () => {
      expect(errorOf('"id","label"\n"1","2"\n')).toBe(
        'train.csv: line 1: unrecognised header ""id","label"": expected "label,pixel0,...,pixel783" (train.csv) ' +
          'or "pixel0,...,pixel783" (test.csv), optionally after an unnamed index column',
      );
      // A named index column (to_csv(index_label=...)) is not one pandas writes by default: refused.
      expect(errorOf(`id,${TRAIN_HEADER}\n0,${row(1)}\n`)).toMatch(
        /^train\.csv: line 1: unrecognised header "id,label,/,
      );
    });

    it('reads the real MNIST test set written as pandas QUOTE_ALL with index and floats, as the plain layout', () => {
      const mnist = loadMnist('test');
      const n = 1000;
      const images = mnist.images.subarray(0, n * 784);
      const labels = mnist.labels!.subarray(0, n);
      const text = pandasCsv(images, labels, { quoteAll: true, index: true, floats: true });
      const read = parseKaggleCsv(Buffer.from(text, 'latin1'), 'train.csv');
      expect(fingerprint(read)).toBe(fingerprint(createDataset('train.csv', images, labels)));
    });
  });
});
