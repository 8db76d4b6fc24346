/**
 * Reader for the IDX format that MNIST ships in (http://yann.lecun.com/exdb/mnist/): a 4-byte
 * magic `00 00 <dtype> <ndims>`, `ndims` big-endian uint32 sizes, then the row-major data.
 *
 * The reader is general over shape (any ndims, any sizes); what counts as a usable image is the
 * MNIST loader's decision. It is strict about length because a truncated download otherwise
 * loads "fine" with the last images silently black, and trailing bytes usually mean the file
 * is not what its header claims.
 */
import { DataError } from './errors.js';
import { readDataFile } from './read-bytes.js';

/** The only element type we support; the others (int8, int16, float...) never occur in MNIST. */
const IDX_DTYPE_UBYTE = 0x08;

export interface IdxTensor {
  /** Sizes from the header, outermost first (for images: count, rows, columns). */
  readonly dims: readonly number[];
  /** Row-major unsigned bytes, exactly the product of `dims` long. */
  readonly data: Uint8Array;
}

export interface IdxImages {
  readonly count: number;
  readonly height: number;
  readonly width: number;
  /** count * height * width bytes, image after image. */
  readonly pixels: Uint8Array;
}

const MAGIC_BYTES = 4;
const DIM_BYTES = 4;

/**
 * Parses IDX bytes already in memory. `source` only labels errors. If `expectedDims` is given,
 * a file with another number of dimensions is rejected (that is how an images file passed where
 * labels belong is caught).
 */
export function parseIdx(bytes: Uint8Array, source: string, expectedDims?: number): IdxTensor {
  if (bytes.length < MAGIC_BYTES) {
    throw new DataError(source, `truncated: ${bytes.length} bytes is shorter than the 4-byte IDX magic`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DataError(source, `bad magic ${hex32(magic)}: not an IDX file (must start with 00 00)`);
  }
  const dtype = bytes[2];
  if (dtype !== IDX_DTYPE_UBYTE) {
    throw new DataError(
      source,
      `unsupported dtype 0x${dtype.toString(16).padStart(2, '0')} in magic ${hex32(magic)}: only 0x08 (unsigned byte) is supported`,
    );
  }
  const ndims = bytes[3];
  if (ndims === 0) throw new DataError(source, `bad magic ${hex32(magic)}: zero dimensions`);
  if (expectedDims !== undefined && ndims !== expectedDims) {
    throw new DataError(
      source,
      `wrong magic ${hex32(magic)}: ${ndims} dimension(s), expected ${expectedDims} ` +
        `(magic ${hex32((IDX_DTYPE_UBYTE << 8) | expectedDims)})`,
    );
  }

  const headerBytes = MAGIC_BYTES + ndims * DIM_BYTES;
  if (bytes.length < headerBytes) {
    throw new DataError(
      source,
      `truncated header: ${ndims} dimensions need ${headerBytes} header bytes, file has ${bytes.length}`,
    );
  }
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) {
    const size = view.getUint32(MAGIC_BYTES + d * DIM_BYTES);
    if (size === 0)
      throw new DataError(source, `dimension ${d} has size 0 (header says ${dims.concat(size).join('x')})`);
    dims.push(size);
  }

  // Exact in doubles for every size a file could actually have (< 2^53 bytes).
  const expected = dims.reduce((a, b) => a * b, 1);
  const actual = bytes.length - headerBytes;
  const shape = `${dims.join('x')} = ${expected}`;
  const noun = ndims === 3 ? 'pixel bytes' : 'data bytes';
  if (actual < expected) {
    throw new DataError(source, `truncated: header says ${shape} ${noun}, file has ${actual}`);
  }
  if (actual > expected) {
    throw new DataError(
      source,
      `${actual - expected} trailing bytes: header says ${shape} ${noun}, file has ${actual}`,
    );
  }
  // A plain Uint8Array view rather than a Buffer slice: no copy, and no Buffer-specific
  // semantics (Buffer#slice does not copy) leaking to callers.
  return { dims, data: new Uint8Array(bytes.buffer, bytes.byteOffset + headerBytes, expected) };
}

/** Reads an IDX file (raw or gzip) of any shape. */
function readIdx(path: string, expectedDims?: number): IdxTensor {
  return parseIdx(readDataFile(path), path, expectedDims);
}

/** Reads a 3-D IDX images file (magic 0x00000803). */
export function readIdxImages(path: string): IdxImages {
  const { dims, data } = readIdx(path, 3);
  return { count: dims[0], height: dims[1], width: dims[2], pixels: data };
}

/** Reads a 1-D IDX labels file (magic 0x00000801). Values are not range-checked here. */
export function readIdxLabels(path: string): Uint8Array {
  return readIdx(path, 1).data;
}

/** Serialises bytes as IDX; the inverse of parseIdx, used to write fixtures and subsets. */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Uint8Array {
  if (dims.length === 0 || dims.length > 255)
    throw new RangeError(`encodeIdx: bad number of dims ${dims.length}`);
  for (const size of dims) {
    if (!Number.isInteger(size) || size <= 0 || size > 0xffffffff)
      throw new RangeError(`encodeIdx: bad size ${size}`);
  }
  const expected = dims.reduce((a, b) => a * b, 1);
  if (data.length !== expected) {
    throw new RangeError(`encodeIdx: dims ${dims.join('x')} need ${expected} bytes, got ${data.length}`);
  }
  const headerBytes = MAGIC_BYTES + dims.length * DIM_BYTES;
  const out = new Uint8Array(headerBytes + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, (IDX_DTYPE_UBYTE << 8) | dims.length);
  dims.forEach((size, d) => view.setUint32(MAGIC_BYTES + d * DIM_BYTES, size));
  out.set(data, headerBytes);
  return out;
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
