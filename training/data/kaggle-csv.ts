/**
 * The CSV files of Kaggle's "Digit Recognizer" competition:
 *   train.csv  `label,pixel0,...,pixel783` then one labelled image per line (42000 lines, ~75 MB)
 *   test.csv   `pixel0,...,pixel783` then one unlabelled image per line (28000 lines)
 * and the `submission.csv` it expects back.
 *
 * The same files as other tools write them are read too:
 *   - quoted names and values (RFC 4180; pandas `to_csv(quoting=csv.QUOTE_ALL)`);
 *   - a leading unnamed index column (pandas `to_csv` without `index=False`): the header starts with an
 *     empty name and each row with its index (0, 1, 2...), which is skipped whatever it holds;
 *   - whole numbers written as floats (`12.0`, what pandas writes for a float column); `12.5` is refused.
 *
 * Quoting is csv-parse's job (RFC 4180), one record at a time and none of them kept. A file without a
 * single double quote, which is what Kaggle ships, has nothing to unquote and is scanned bytewise instead:
 * csv-parse makes a string of each of train.csv's 33 million fields and takes ~25 times as long (18 s, not
 * 0.7 s, for 42,000 rows). The fuzz tests read files both ways and require the same data set or the same
 * error.
 */
import { writeFileSync } from 'node:fs';
import { CsvError, parse as parseCsv } from 'csv-parse/sync';
import { createDataset, NUM_CLASSES, PIXELS_PER_IMAGE, type Dataset } from './dataset.js';
import { DataError } from './errors.js';
import { readDataFile } from './read-bytes.js';

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const COMMA = 0x2c;
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const MAX_PIXEL = 255;
/** Far above a real row (785 quoted `255.0`s are 6 KB): a longer one is refused, not buffered. */
const MAX_RECORD_CHARS = 1 << 20;

const PIXEL_COLUMNS = Array.from({ length: PIXELS_PER_IMAGE }, (_, i) => `pixel${i}`).join(',');
const TRAIN_HEADER = `label,${PIXEL_COLUMNS}`;
const TEST_HEADER = PIXEL_COLUMNS;

/** Which columns a file has, from its header. */
interface Layout {
  /** train.csv: a label before the pixels. */
  readonly labelled: boolean;
  /** A leading unnamed index column (pandas' default), skipped. */
  readonly indexed: boolean;
  /** Fields in every row, the index's included. */
  readonly fields: number;
}

/** The layout a header's names give, or null if it is neither of Kaggle's (behind an index column or not). */
function layoutOf(names: readonly string[]): Layout | null {
  const indexed = names.length > 1 && names[0] === '';
  // One CR more than the line's own is tolerated, as it always was.
  const header = (indexed ? names.slice(1) : names).join(',').replace(/\r$/, '');
  if (header !== TRAIN_HEADER && header !== TEST_HEADER) return null;
  const labelled = header === TRAIN_HEADER;
  return { labelled, indexed, fields: PIXELS_PER_IMAGE + (labelled ? 1 : 0) + (indexed ? 1 : 0) };
}

interface ParseKaggleCsvOptions {
  /**
   * `csv-parse` reads every file with csv-parse, even one without quotes that `auto` scans bytewise (the
   * tests compare the two).
   */
  reader?: 'auto' | 'csv-parse';
}

/** Parses a Kaggle CSV already in memory; `source` only labels errors (and names the dataset). */
export function parseKaggleCsv(
  bytes: Uint8Array,
  source: string,
  options: ParseKaggleCsvOptions = {},
): Dataset {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8Bom = buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf;
  const start = utf8Bom ? 3 : 0;
  const sink = new RowSink(buf, start, source);
  if (options.reader === 'csv-parse' || buf.indexOf(QUOTE, start) !== -1) readQuoted(buf, start, sink);
  else scanPlain(buf, start, sink);
  return sink.finish();
}

/**
 * Where rows go, whichever way they were read: the layout, the pixels and labels, and every error message
 * (so both readers word them the same).
 */
class RowSink {
  layout: Layout | null = null;
  /** Fields (the index column counted) of the label, -1 in test.csv, and of pixel0. */
  labelField = -1;
  firstPixel = 0;
  rows = 0;
  images = new Uint8Array(0);
  labels: Uint8Array | null = null;

  constructor(
    readonly buf: Buffer,
    readonly start: number,
    readonly source: string,
  ) {}

  header(names: readonly string[]): Layout {
    const layout = layoutOf(names);
    if (layout === null) {
      const headerText = this.buf.toString('latin1', this.start, lineEnd(this.buf, this.start));
      const shown = headerText.length > 60 ? `${headerText.slice(0, 60)}...` : headerText;
      throw this.error(
        1,
        `unrecognised header "${shown}": expected "label,pixel0,...,pixel783" (train.csv) or ` +
          '"pixel0,...,pixel783" (test.csv), optionally after an unnamed index column',
      );
    }
    this.layout = layout;
    const index = layout.indexed ? 1 : 0;
    this.labelField = layout.labelled ? index : -1;
    this.firstPixel = index + (layout.labelled ? 1 : 0);
    return layout;
  }

  /**
   * Sizes the arrays once the data starts at `dataStart`: rows are counted up front so pixels go straight
   * into one right-sized array. Blank trailing lines make this an over-estimate, fixed up at the end.
   */
  allocate(dataStart: number): void {
    const { buf } = this;
    const { labelled, indexed, fields } = this.layout!;
    let capacity = 0;
    for (let p = buf.indexOf(LF, dataStart); p !== -1; p = buf.indexOf(LF, p + 1)) capacity++;
    if (buf.length > dataStart && buf[buf.length - 1] !== LF) capacity++;
    // A row is at least one digit per value (the index may be empty) and the commas between fields:
    // blank lines must not size the array.
    const minRow = 2 * fields - 1 - (indexed ? 1 : 0);
    capacity = Math.min(capacity, Math.floor((buf.length - dataStart) / minRow));
    this.images = new Uint8Array(capacity * PIXELS_PER_IMAGE);
    this.labels = labelled ? new Uint8Array(capacity) : null;
  }

  finish(): Dataset {
    const { rows, images, labels, source } = this;
    if (rows === 0) throw new DataError(source, 'no data rows after the header');
    // Copy down to size only when the estimate was loose, so usually no second 33 MB buffer.
    const used = rows * PIXELS_PER_IMAGE;
    return createDataset(
      source,
      used === images.length ? images : images.slice(0, used),
      labels === null || rows === labels.length ? labels : labels.slice(0, rows),
    );
  }

  /** A whole number too large for its column (`text` as written); only built on the failure path. */
  outOfRange(line: number, field: number, text: string): DataError {
    if (field === this.labelField) return this.error(line, `label ${text} is outside 0..${NUM_CLASSES - 1}`);
    return this.error(line, `${this.columnName(field)} = ${text} is outside 0..${MAX_PIXEL}`);
  }

  columnName(field: number): string {
    const { labelled, indexed } = this.layout!;
    if (indexed && field === 0) return 'the index column';
    const column = field - (indexed ? 1 : 0);
    if (labelled) return column === 0 ? 'label' : `pixel${column - 1}`;
    return `pixel${column}`;
  }

  wrongFieldCount(line: number, found: number): DataError {
    const { labelled, indexed, fields } = this.layout!;
    const layout = `${indexed ? 'index + ' : ''}${labelled ? 'label + ' : ''}784 pixels`;
    return this.error(line, `expected ${fields} fields (${layout}), found ${found}`);
  }

  /** The error for a field that is not a whole number in range; only built on the failure path. */
  badField(line: number, field: number, text: string): DataError {
    const column = this.columnName(field);
    if (text === '') return this.error(line, `${column} is empty`);
    if (/^-[0-9]+(\.0*)?$/.test(text)) {
      const isLabel = this.layout!.labelled && field === (this.layout!.indexed ? 1 : 0);
      const range = isLabel ? `0..${NUM_CLASSES - 1}` : `0..${MAX_PIXEL}`;
      return this.error(line, `${column} = ${text} is outside ${range}`);
    }
    return this.error(line, `${column} = "${text}" is not an integer`);
  }

  blankLine(line: number): DataError {
    return this.error(line, 'blank line before the end of the file');
  }

  error(line: number, problem: string): DataError {
    return new DataError(`${this.source}: line ${line}`, problem);
  }
}

/**
 * The fast reader for a file with no quotes in it: one pass over the bytes, no strings made. Lines end at
 * LF or CRLF (a CR at the very end of the file ends it too), exactly as csv-parse splits them below.
 */
function scanPlain(buf: Buffer, start: number, sink: RowSink): void {
  const headerEnd = lineEnd(buf, start);
  const { fields, indexed } = sink.header(buf.toString('latin1', start, headerEnd).split(','));
  const dataStart = nextLine(buf, headerEnd);
  sink.allocate(dataStart);
  const { images, labels, labelField, firstPixel } = sink;

  let rows = 0;
  let line = 1;
  let pos = dataStart;
  while (pos < buf.length) {
    line++;
    const end = lineEnd(buf, pos);
    if (end === pos) {
      // Trailing blank lines are what editors leave behind; a blank line before data is not.
      if (restIsBlank(buf, pos)) break;
      throw sink.blankLine(line);
    }
    const pixelBase = rows * PIXELS_PER_IMAGE - firstPixel;
    let field = 0;
    let p = pos;
    for (;;) {
      // Counted before the value is looked at, so a trailing comma reads as "too many fields".
      if (field >= fields) throw sink.wrongFieldCount(line, countFields(buf, pos, end));
      const fieldStart = p;
      if (indexed && field === 0) {
        while (p < end && buf[p] !== COMMA) p++; // the index: skipped, whatever it holds
      } else {
        let value = 0;
        let c = 0;
        while (p < end) {
          c = buf[p];
          if (c < DIGIT_0 || c > DIGIT_9) break;
          value = value * 10 + (c - DIGIT_0);
          p++;
        }
        if (p < end && c === DOT && p > fieldStart) {
          // 12.0, 12.000, 12.: a whole number written as a float
          for (p++, c = COMMA; p < end; p++) {
            c = buf[p];
            if (c !== DIGIT_0) break;
          }
        }
        if (p === fieldStart || (p < end && c !== COMMA)) {
          const comma = buf.indexOf(COMMA, fieldStart);
          const fieldEnd = comma === -1 || comma > end ? end : comma;
          throw sink.badField(line, field, buf.toString('latin1', fieldStart, fieldEnd));
        }
        if (field === labelField) {
          if (value >= NUM_CLASSES) throw sink.outOfRange(line, field, buf.toString('latin1', fieldStart, p));
          labels![rows] = value;
        } else {
          if (value > MAX_PIXEL) throw sink.outOfRange(line, field, buf.toString('latin1', fieldStart, p));
          images[pixelBase + field] = value;
        }
      }
      field++;
      if (p === end) break;
      p++; // past the comma
    }
    if (field !== fields) throw sink.wrongFieldCount(line, countFields(buf, pos, end));
    rows++;
    pos = nextLine(buf, end);
  }
  sink.rows = rows;
}

/**
 * The reader for anything else: csv-parse (RFC 4180) hands over one record at a time, which is checked and
 * stored at once and not kept.
 */
function readQuoted(buf: Buffer, start: number, sink: RowSink): void {
  // A CR at the very end of the file ends its last line, as in scanPlain.
  const end = buf.length > start && buf[buf.length - 1] === CR ? buf.length - 1 : buf.length;
  const input = buf.subarray(start, end);
  // Line numbers: LFs counted up to each record's first byte, going forward only.
  let recordStart = 0;
  let counted = 0;
  let line = 1;
  const lineAt = (offset: number): number => {
    for (let p = input.indexOf(LF, counted); p !== -1 && p < offset; p = input.indexOf(LF, p + 1)) line++;
    counted = Math.max(counted, offset);
    return line;
  };
  // 0 until a blank line; from it on, only line ends may follow (trailing blank lines, as editors leave).
  let blankLine = 0;
  let dataStarted = false;

  const onRecord = (record: string[], recordEnd: number): void => {
    const first = recordStart;
    recordStart = recordEnd;
    const at = lineAt(first);
    if (sink.layout === null) {
      sink.header(record);
      return;
    }
    if (!dataStarted) {
      sink.allocate(start + first);
      dataStarted = true;
    }
    if (blankLine === 0 && isEmptyLine(input, first, recordEnd)) {
      blankLine = at;
      return;
    }
    if (blankLine !== 0) {
      if (onlyLineEnds(input, first, recordEnd)) return;
      throw sink.blankLine(blankLine);
    }
    const { fields, indexed } = sink.layout;
    const { images, labels, labelField, firstPixel, rows } = sink;
    const pixelBase = rows * PIXELS_PER_IMAGE - firstPixel;
    const n = Math.min(record.length, fields);
    for (let field = indexed ? 1 : 0; field < n; field++) {
      const text = record[field];
      const value = wholeNumber(text);
      if (value < 0) throw sink.badField(at, field, text);
      if (field === labelField) {
        if (value >= NUM_CLASSES) throw sink.outOfRange(at, field, text);
        labels![rows] = value;
      } else {
        if (value > MAX_PIXEL) throw sink.outOfRange(at, field, text);
        images[pixelBase + field] = value;
      }
    }
    if (record.length !== fields) throw sink.wrongFieldCount(at, record.length);
    sink.rows++;
  };

  try {
    parseCsv(input, {
      encoding: 'latin1',
      record_delimiter: ['\r\n', '\n'],
      relax_column_count: true,
      skip_empty_lines: false,
      max_record_size: MAX_RECORD_CHARS,
      on_record: (record: string[], info: { bytes: number }) => {
        onRecord(record, info.bytes);
        return null; // nothing kept
      },
    });
  } catch (err) {
    if (!(err instanceof CsvError)) throw err;
    const field = typeof err.column === 'number' ? err.column : null;
    const column =
      field === null
        ? 'a field'
        : sink.layout === null
          ? `header field ${field + 1}`
          : sink.columnName(field);
    throw sink.error(lineAt(recordStart), csvProblem(err, column));
  }
  if (sink.layout === null) sink.header([]); // an empty file
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

/** csv-parse's complaint in our words, about `column` of the record that starts on the line named. */
function csvProblem(err: CsvError, column: string): string {
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'a quoted field is never closed (an odd number of double quotes)';
    case 'CSV_INVALID_CLOSING_QUOTE':
      return `${column}: a closing quote must be followed by a comma or the end of the line`;
    case 'INVALID_OPENING_QUOTE':
      return `${column}: a double quote inside an unquoted field (quote the whole field, doubling the quote)`;
    case 'CSV_MAX_RECORD_SIZE':
      return `a row of more than ${MAX_RECORD_CHARS} characters`;
    default:
      return `not valid CSV: ${err.message}`;
  }
}

/** The value of a whole number written as digits, optionally with a zero fraction (`12`, `012`, `12.0`, `12.`), else -1. */
function wholeNumber(text: string): number {
  const n = text.length;
  let value = 0;
  let i = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < DIGIT_0 || c > DIGIT_9) break;
    value = value * 10 + (c - DIGIT_0);
  }
  if (i === 0) return -1;
  if (i < n && text.charCodeAt(i) === DOT) {
    i++;
    while (i < n && text.charCodeAt(i) === DIGIT_0) i++;
  }
  return i === n ? value : -1;
}

/** Index of the line's end (its LF, or CR before LF, or the buffer end, or a CR that ends the buffer). */
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
  return onlyLineEnds(buf, from, buf.length);
}

function onlyLineEnds(buf: Buffer, from: number, to: number): boolean {
  for (let p = from; p < to; p++) if (buf[p] !== LF && buf[p] !== CR) return false;
  return true;
}

/** Whether bytes `from..to` (a record with its line end) are an empty line: nothing but LF or CRLF. */
function isEmptyLine(buf: Buffer, from: number, to: number): boolean {
  const n = to - from;
  return n === 0 || (n === 1 && buf[from] === LF) || (n === 2 && buf[from] === CR && buf[from + 1] === LF);
}

/** Fields on an unquoted line: its commas, plus one. */
function countFields(buf: Buffer, start: number, end: number): number {
  let found = 1;
  for (let p = start; p < end; p++) if (buf[p] === COMMA) found++;
  return found;
}
