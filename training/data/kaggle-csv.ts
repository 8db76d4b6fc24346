/**
 * The CSV files of Kaggle's "Digit Recognizer" competition:
 *   train.csv  `label,pixel0,...,pixel783` then one labelled image per line (42000 lines, ~75 MB)
 *   test.csv   `pixel0,...,pixel783` then one unlabelled image per line (28000 lines)
 * and the `submission.csv` it expects back.
 *
 * The parser scans bytes of one Buffer instead of splitting strings: splitting train.csv would
 * allocate ~33 million field strings and take seconds; scanning takes a fraction of one.
 */
import { writeFileSync } from 'node:fs';
import { createDataset, NUM_CLASSES, PIXELS_PER_IMAGE, type Dataset } from './dataset.js';
import { DataError } from './errors.js';
import { readDataFile } from './read-bytes.js';

const LF = 0x0a;
const CR = 0x0d;
const COMMA = 0x2c;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const MAX_PIXEL = 255;

const PIXEL_COLUMNS = Array.from({ length: PIXELS_PER_IMAGE }, (_, i) => `pixel${i}`).join(',');
const TRAIN_HEADER = `label,${PIXEL_COLUMNS}`;
const TEST_HEADER = PIXEL_COLUMNS;

type KaggleCsvKind = 'train' | 'test';

/** Which of the two Kaggle layouts a header line is, or null if neither. */
function kaggleCsvKind(headerLine: string): KaggleCsvKind | null {
  const header = headerLine.replace(/\r$/, '').replace(/^\uFEFF/, '');
  if (header === TRAIN_HEADER) return 'train';
  if (header === TEST_HEADER) return 'test';
  return null;
}

/** Parses a Kaggle CSV already in memory; `source` only labels errors (and names the dataset). */
export function parseKaggleCsv(bytes: Uint8Array, source: string): Dataset {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8Bom = buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf;
  const start = utf8Bom ? 3 : 0;

  const headerEnd = lineEnd(buf, start);
  const headerText = buf.toString('latin1', start, headerEnd);
  const kind = kaggleCsvKind(headerText);
  if (kind === null) {
    const shown = headerText.length > 60 ? `${headerText.slice(0, 60)}...` : headerText;
    throw new DataError(
      `${source}: line 1`,
      `unrecognised header "${shown}": expected "label,pixel0,...,pixel783" (train.csv) or "pixel0,...,pixel783" (test.csv)`,
    );
  }
  const labelled = kind === 'train';
  const fields = labelled ? PIXELS_PER_IMAGE + 1 : PIXELS_PER_IMAGE;

  // Rows are counted up front so pixels go straight into one right-sized array. Blank trailing
  // lines make this an over-estimate, fixed up at the end.
  const dataStart = nextLine(buf, headerEnd);
  let capacity = 0;
  for (let p = buf.indexOf(LF, dataStart); p !== -1; p = buf.indexOf(LF, p + 1)) capacity++;
  if (buf.length > dataStart && buf[buf.length - 1] !== LF) capacity++;
  // A row is at least `fields` digits and the commas between them: blank lines must not size the array.
  capacity = Math.min(capacity, Math.floor((buf.length - dataStart) / (2 * fields - 1)));
  const images = new Uint8Array(capacity * PIXELS_PER_IMAGE);
  const labels = labelled ? new Uint8Array(capacity) : null;

  let rows = 0;
  let line = 1;
  let pos = dataStart;
  while (pos < buf.length) {
    line++;
    const end = lineEnd(buf, pos);
    if (end === pos) {
      // Trailing blank lines are what editors leave behind; a blank line before data is not.
      if (restIsBlank(buf, pos)) break;
      throw new DataError(`${source}: line ${line}`, 'blank line before the end of the file');
    }
    const pixelBase = rows * PIXELS_PER_IMAGE;
    let field = 0;
    let p = pos;
    for (;;) {
      // Counted before the value is looked at, so a trailing comma reads as "too many fields".
      if (field >= fields) {
        throw new DataError(`${source}: line ${line}`, wrongFieldCount(buf, pos, end, fields, labelled));
      }
      const fieldStart = p;
      let value = 0;
      let c = 0;
      while (p < end) {
        c = buf[p];
        if (c < DIGIT_0 || c > DIGIT_9) break;
        value = value * 10 + (c - DIGIT_0);
        p++;
      }
      if (p === fieldStart || (p < end && c !== COMMA)) {
        throw badField(buf, source, line, field, labelled, fieldStart, end);
      }
      if (labelled && field === 0) {
        if (value >= NUM_CLASSES) {
          throw new DataError(`${source}: line ${line}`, `label ${value} is outside 0..${NUM_CLASSES - 1}`);
        }
        labels![rows] = value;
      } else {
        if (value > MAX_PIXEL) {
          throw new DataError(
            `${source}: line ${line}`,
            `${columnName(field, labelled)} = ${value} is outside 0..${MAX_PIXEL}`,
          );
        }
        images[pixelBase + field - (labelled ? 1 : 0)] = value;
      }
      field++;
      if (p === end) break;
      p++; // past the comma
    }
    if (field !== fields) {
      throw new DataError(`${source}: line ${line}`, wrongFieldCount(buf, pos, end, fields, labelled));
    }
    rows++;
    pos = nextLine(buf, end);
  }

  if (rows === 0) throw new DataError(source, 'no data rows after the header');
  // Copy down to size only when the estimate was loose, so usually no second 33 MB buffer.
  const used = rows * PIXELS_PER_IMAGE;
  return createDataset(
    source,
    used === images.length ? images : images.slice(0, used),
    labels === null || rows === labels.length ? labels : labels.slice(0, rows),
  );
}

/** Loads a Kaggle train.csv or test.csv (gzipped too), telling which from its header. */
export function loadKaggleCsv(path: string): Dataset {
  return parseKaggleCsv(readDataFile(path), path);
}

/** The text of a Kaggle CSV for `dataset`: train layout if it is labelled, test layout if not. */
export function formatKaggleCsv(dataset: Dataset): string {
  const lines: string[] = [dataset.labels === null ? TEST_HEADER : TRAIN_HEADER];
  for (let i = 0; i < dataset.count; i++) {
    const pixels = dataset.images.subarray(i * PIXELS_PER_IMAGE, (i + 1) * PIXELS_PER_IMAGE).join(',');
    lines.push(dataset.labels === null ? pixels : `${dataset.labels[i]},${pixels}`);
  }
  return `${lines.join('\n')}\n`;
}

export function writeKaggleCsv(path: string, dataset: Dataset): void {
  writeFileSync(path, formatKaggleCsv(dataset));
}

/** Kaggle's submission text: `ImageId,Label`, ImageIds counting from 1 in test.csv order. */
function formatSubmission(predictions: Uint8Array): string {
  const lines: string[] = ['ImageId,Label'];
  for (let i = 0; i < predictions.length; i++) {
    const label = predictions[i];
    if (label >= NUM_CLASSES)
      throw new RangeError(`formatSubmission: prediction ${label} at index ${i} is not 0..9`);
    lines.push(`${i + 1},${label}`);
  }
  return `${lines.join('\n')}\n`;
}

export function writeSubmission(path: string, predictions: Uint8Array): void {
  writeFileSync(path, formatSubmission(predictions));
}

/** Index of the line's end (its LF, or CR before LF, or the buffer end). */
function lineEnd(buf: Buffer, from: number): number {
  const lf = buf.indexOf(LF, from);
  const end = lf === -1 ? buf.length : lf;
  return end > from && buf[end - 1] === CR ? end - 1 : end;
}

/** Start of the line after the one ending at `end` (as returned by lineEnd). */
function nextLine(buf: Buffer, end: number): number {
  if (buf[end] === CR) end++;
  return end < buf.length ? end + 1 : end;
}

function restIsBlank(buf: Buffer, from: number): boolean {
  for (let p = from; p < buf.length; p++) if (buf[p] !== LF && buf[p] !== CR) return false;
  return true;
}

function columnName(field: number, labelled: boolean): string {
  if (labelled) return field === 0 ? 'label' : `pixel${field - 1}`;
  return `pixel${field}`;
}

function wrongFieldCount(buf: Buffer, start: number, end: number, fields: number, labelled: boolean): string {
  let found = 1;
  for (let p = start; p < end; p++) if (buf[p] === COMMA) found++;
  const layout = labelled ? 'label + 784 pixels' : '784 pixels';
  return `expected ${fields} fields (${layout}), found ${found}`;
}

/** The error for a field that is not a plain unsigned integer; only built on the failure path. */
function badField(
  buf: Buffer,
  source: string,
  line: number,
  field: number,
  labelled: boolean,
  fieldStart: number,
  end: number,
): DataError {
  const comma = buf.indexOf(COMMA, fieldStart);
  const fieldEnd = comma === -1 || comma > end ? end : comma;
  const text = buf.toString('latin1', fieldStart, fieldEnd);
  const where = `${source}: line ${line}`;
  const column = columnName(field, labelled);
  if (text === '') return new DataError(where, `${column} is empty`);
  if (/^-[0-9]+$/.test(text)) {
    const range = labelled && field === 0 ? `0..${NUM_CLASSES - 1}` : `0..${MAX_PIXEL}`;
    return new DataError(where, `${column} = ${text} is outside ${range}`);
  }
  return new DataError(where, `${column} = "${text}" is not an integer`);
}
