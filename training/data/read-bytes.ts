/**
 * Reads a data file whole, transparently gunzipping it. Gzip is recognised by its magic bytes
 * rather than by a `.gz` suffix because downloaded MNIST files are often renamed or
 * double-compressed by browsers, and a wrong guess either way would surface as a baffling
 * "bad magic" from the format parser instead of the real cause.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { DataError } from './errors.js';

/** Far above any MNIST-like file (the 60k training images are 47 MB), far below a gzip bomb's output. */
export const MAX_DATA_FILE_BYTES = 1024 ** 3;
const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC_0 && bytes[1] === GZIP_MAGIC_1;
}

/** The file's bytes, decompressed if it is gzip. Every failure is a DataError naming the path. */
export function readDataFile(path: string, maxBytes = MAX_DATA_FILE_BYTES): Uint8Array {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new DataError(path, describeReadFailure(err), { cause: err });
  }
  if (!isGzip(raw)) return raw;
  try {
    return gunzipSync(raw, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new DataError(path, `decompresses to more than ${maxBytes} bytes: refused`, { cause: err });
    }
    const reason = err instanceof Error ? err.message : String(err);
    throw new DataError(path, `corrupt gzip stream: ${reason}`, { cause: err });
  }
}

function describeReadFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'is a directory, expected a file';
  if (code === 'EACCES') return 'permission denied';
  return `cannot read: ${err instanceof Error ? err.message : String(err)}`;
}
