/**
 * One checkpoint = one self-describing, self-checking file.
 *
 * Layout (all integers little-endian):
 *
 *   offset 0   "GFCK"                magic, 4 bytes
 *   offset 4   u8 format version     currently 1
 *   offset 5   3 zero bytes          reserved, must be zero
 *   offset 8   u32 header length     bytes of UTF-8 JSON that follow
 *   offset 12  header                UTF-8 JSON (exactly as JSON.stringify writes it)
 *              zero padding          up to the next multiple of 8 (from the file start)
 *   payload    float32 tensors       back to back, each 4-byte aligned, little-endian
 *
 * The header is `{ meta, tensors: [{ name, offset, length }], payloadBytes, sha256 }`: `offset` is in
 * bytes from the start of the payload, `length` in float32 values. `sha256` (lowercase hex) is the
 * hash of the canonical JSON (keys sorted) of `{ meta, tensors, payloadBytes }` followed by the
 * payload bytes, so it covers the meta, the tensor table and every tensor value.
 *
 * Every other byte is pinned as well: the reserved bytes and the padding must be zero, the file must
 * end exactly where the payload ends, and the header must be byte-for-byte what JSON.stringify
 * writes for its parsed value (so a flip that leaves the JSON meaning unchanged, e.g. `1e5` → `1E5`,
 * is still caught). Any single flipped bit anywhere in the file makes decoding fail.
 *
 * `meta` is stored as JSON: it goes through JSON.stringify/JSON.parse on encode, so `undefined`
 * becomes `null`, non-finite numbers become `null`, `toJSON` (e.g. Date) applies, and so on. What
 * decodeCheckpoint returns is exactly that JSON value.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';

const CHECKPOINT_MAGIC = 'GFCK';
const CHECKPOINT_FORMAT_VERSION = 1;

/** magic (4) + version (1) + reserved (3) + header length (4). */
const PREAMBLE_BYTES = 12;
const MAGIC_BYTES = new TextEncoder().encode(CHECKPOINT_MAGIC);
const LITTLE_ENDIAN_HOST = endianness() === 'LE';
const SHA256_HEX = /^[0-9a-f]{64}$/;
const HEADER_KEYS = ['meta', 'tensors', 'payloadBytes', 'sha256'];
const ENTRY_KEYS = ['name', 'offset', 'length'];

export type CheckpointErrorCode =
  | 'bad_magic'
  | 'unsupported_version'
  | 'truncated'
  | 'trailing_bytes'
  | 'bad_header'
  | 'bad_tensor_table'
  | 'checksum_mismatch'
  | 'invalid_input'
  | 'not_found'
  | 'io'
  | 'no_valid_checkpoint';

/** Every problem with a checkpoint (its bytes, its file, its directory) is one of these. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  readonly code: CheckpointErrorCode;

  constructor(code: CheckpointErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

interface TensorEntry {
  name: string;
  /** Bytes from the start of the payload; a multiple of 4. */
  offset: number;
  /** Number of float32 values. */
  length: number;
}

export interface DecodedCheckpoint {
  meta: unknown;
  tensors: Record<string, Float32Array>;
}

export function encodeCheckpoint(meta: unknown, tensors: Record<string, Float32Array>): Uint8Array {
  const jsonMeta = toJsonValue(meta);
  if (tensors === null || typeof tensors !== 'object') {
    throw new CheckpointError('invalid_input', 'tensors must be an object of Float32Arrays');
  }

  const table: TensorEntry[] = [];
  const arrays: Float32Array[] = [];
  let payloadBytes = 0;
  for (const [name, array] of Object.entries(tensors)) {
    if (!(array instanceof Float32Array)) {
      throw new CheckpointError('invalid_input', `tensor "${name}" is not a Float32Array`);
    }
    table.push({ name, offset: payloadBytes, length: array.length });
    arrays.push(array);
    payloadBytes += array.byteLength;
  }

  // The hash is always 64 hex characters, so the header's size is known before the hash is.
  const headerSize = utf8(headerText(jsonMeta, table, payloadBytes, '0'.repeat(64))).length;
  const payloadStart = align8(PREAMBLE_BYTES + headerSize);
  const out = new Uint8Array(payloadStart + payloadBytes);

  for (let i = 0; i < arrays.length; i++) {
    const array = arrays[i];
    const at = payloadStart + table[i].offset;
    out.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), at);
    if (!LITTLE_ENDIAN_HOST) swap32InPlace(out.subarray(at, at + array.byteLength));
  }
  const sha256 = digest(jsonMeta, table, payloadBytes, out.subarray(payloadStart));
  const header = utf8(headerText(jsonMeta, table, payloadBytes, sha256));
  if (header.length !== headerSize) throw new Error('checkpoint header changed size while hashing');

  out.set(MAGIC_BYTES, 0);
  out[4] = CHECKPOINT_FORMAT_VERSION;
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(8, header.length, true);
  out.set(header, PREAMBLE_BYTES);
  return out;
}

export function decodeCheckpoint(bytes: Uint8Array): DecodedCheckpoint {
  if (!(bytes instanceof Uint8Array))
    throw new CheckpointError('invalid_input', 'checkpoint bytes must be a Uint8Array');

  for (let i = 0; i < MAGIC_BYTES.length; i++) {
    if (i >= bytes.length)
      throw new CheckpointError(
        'truncated',
        `truncated: file is ${bytes.length} bytes, shorter than the magic`,
      );
    if (bytes[i] !== MAGIC_BYTES[i]) {
      throw new CheckpointError(
        'bad_magic',
        `bad magic: expected "${CHECKPOINT_MAGIC}", found 0x${hex(bytes.subarray(0, 4))}; not a gradfleet checkpoint`,
      );
    }
  }
  if (bytes.length < PREAMBLE_BYTES) {
    throw new CheckpointError(
      'truncated',
      `truncated: file is ${bytes.length} bytes, shorter than the ${PREAMBLE_BYTES}-byte preamble`,
    );
  }
  if (bytes[4] !== CHECKPOINT_FORMAT_VERSION) {
    throw new CheckpointError(
      'unsupported_version',
      `unknown checkpoint format version ${bytes[4]} (this build reads version ${CHECKPOINT_FORMAT_VERSION})`,
    );
  }
  if (bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new CheckpointError(
      'bad_header',
      `reserved bytes 5..7 must be zero, found 0x${hex(bytes.subarray(5, 8))}`,
    );
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  const headerEnd = PREAMBLE_BYTES + headerLength;
  if (headerEnd > bytes.length) {
    throw new CheckpointError(
      'truncated',
      `truncated: header claims ${headerLength} bytes but only ${bytes.length - PREAMBLE_BYTES} follow the preamble`,
    );
  }

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(
      bytes.subarray(PREAMBLE_BYTES, headerEnd),
    );
  } catch (cause) {
    throw new CheckpointError('bad_header', 'header is not valid UTF-8', { cause });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new CheckpointError('bad_header', `header is not JSON: ${errorMessage(cause)}`, { cause });
  }
  const header = checkHeaderShape(parsed);
  if (notTooDeep(() => JSON.stringify(parsed)) !== text) {
    throw new CheckpointError(
      'bad_header',
      'header JSON is not in the canonical form the encoder writes (altered bytes?)',
    );
  }

  const payloadStart = align8(headerEnd);
  const payloadEnd = payloadStart + header.payloadBytes;
  if (payloadEnd > bytes.length) {
    throw new CheckpointError(
      'truncated',
      `truncated: expected ${payloadEnd} bytes (payload of ${header.payloadBytes}), file has ${bytes.length}`,
    );
  }
  if (payloadEnd < bytes.length) {
    throw new CheckpointError(
      'trailing_bytes',
      `${bytes.length - payloadEnd} unexpected bytes after the payload (expected ${payloadEnd} bytes in all)`,
    );
  }
  for (let i = headerEnd; i < payloadStart; i++) {
    if (bytes[i] !== 0) throw new CheckpointError('bad_header', `padding byte at offset ${i} is not zero`);
  }

  checkTensorTable(header.tensors, header.payloadBytes);

  const payload = bytes.subarray(payloadStart, payloadEnd);
  const actual = notTooDeep(() => digest(header.meta, header.tensors, header.payloadBytes, payload));
  if (actual !== header.sha256) {
    throw new CheckpointError(
      'checksum_mismatch',
      `checksum mismatch: header says sha256 ${header.sha256}, content hashes to ${actual}`,
    );
  }

  const tensors: Record<string, Float32Array> = {};
  for (const { name, offset, length } of header.tensors) {
    const tensor = new Float32Array(length);
    const view = new Uint8Array(tensor.buffer);
    view.set(payload.subarray(offset, offset + length * 4));
    if (!LITTLE_ENDIAN_HOST) swap32InPlace(view);
    // defineProperty, so a tensor named "__proto__" is an own property like any other.
    Object.defineProperty(tensors, name, {
      value: tensor,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return { meta: header.meta, tensors };
}

interface Header {
  meta: unknown;
  tensors: TensorEntry[];
  payloadBytes: number;
  sha256: string;
}

function checkHeaderShape(value: unknown): Header {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CheckpointError('bad_header', 'header is not a JSON object');
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  const missing = HEADER_KEYS.filter((k) => !keys.includes(k));
  const extra = keys.filter((k) => !HEADER_KEYS.includes(k));
  if (missing.length > 0 || extra.length > 0) {
    throw new CheckpointError(
      'bad_header',
      `header fields wrong: ${[...missing.map((k) => `missing "${k}"`), ...extra.map((k) => `unexpected "${k}"`)].join(', ')}`,
    );
  }
  if (!isCount(record.payloadBytes)) {
    throw new CheckpointError(
      'bad_header',
      `header payloadBytes must be a non-negative integer, got ${JSON.stringify(record.payloadBytes)}`,
    );
  }
  if (typeof record.sha256 !== 'string' || !SHA256_HEX.test(record.sha256)) {
    throw new CheckpointError('bad_header', 'header sha256 must be 64 lowercase hex characters');
  }
  if (!Array.isArray(record.tensors))
    throw new CheckpointError('bad_tensor_table', 'header tensors is not an array');
  record.tensors.forEach((entry: unknown, i) => {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new CheckpointError('bad_tensor_table', `tensor table entry ${i} is not an object`);
    }
    const e = entry as Record<string, unknown>;
    const entryKeys = Object.keys(e);
    if (entryKeys.length !== ENTRY_KEYS.length || !ENTRY_KEYS.every((k) => entryKeys.includes(k))) {
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor table entry ${i} must have exactly name, offset, length`,
      );
    }
    if (typeof e.name !== 'string')
      throw new CheckpointError('bad_tensor_table', `tensor table entry ${i}: name is not a string`);
    if (!isCount(e.offset) || !isCount(e.length)) {
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor "${e.name}": offset and length must be non-negative integers`,
      );
    }
  });
  return record as unknown as Header;
}

function checkTensorTable(table: TensorEntry[], payloadBytes: number): void {
  const seen = new Set<string>();
  for (const { name, offset, length } of table) {
    if (seen.has(name))
      throw new CheckpointError('bad_tensor_table', `tensor "${name}" appears twice in the tensor table`);
    seen.add(name);
    if (offset % 4 !== 0)
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor "${name}": offset ${offset} is not 4-byte aligned`,
      );
    if (offset + length * 4 > payloadBytes) {
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor "${name}" out of range: bytes ${offset}..${offset + length * 4} but the payload has ${payloadBytes}`,
      );
    }
  }
  const occupied = table.filter((t) => t.length > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < occupied.length; i++) {
    const prev = occupied[i - 1];
    const cur = occupied[i];
    if (prev.offset + prev.length * 4 > cur.offset) {
      throw new CheckpointError(
        'bad_tensor_table',
        `tensors "${prev.name}" and "${cur.name}" overlap at payload offset ${cur.offset}`,
      );
    }
  }
}

/**
 * JSON.stringify and canonicalJson recurse: a header nested thousands deep overflows the stack, which is a
 * bad header, not a crash.
 */
function notTooDeep<T>(work: () => T): T {
  try {
    return work();
  } catch (cause) {
    if (cause instanceof RangeError)
      throw new CheckpointError('bad_header', 'header JSON is nested too deeply', { cause });
    throw cause;
  }
}

function headerText(meta: unknown, tensors: TensorEntry[], payloadBytes: number, sha256: string): string {
  // Key order here is the order decodeCheckpoint's canonical-form check expects.
  return JSON.stringify({
    meta,
    tensors: tensors.map(({ name, offset, length }) => ({ name, offset, length })),
    payloadBytes,
    sha256,
  });
}

function digest(meta: unknown, tensors: TensorEntry[], payloadBytes: number, payload: Uint8Array): string {
  return createHash('sha256')
    .update(canonicalJson({ meta, tensors, payloadBytes }), 'utf8')
    .update(payload)
    .digest('hex');
}

/** JSON with object keys sorted at every level; `value` must already be a plain JSON value. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** meta as the JSON value decode will return (what JSON.parse(JSON.stringify(meta)) gives). */
function toJsonValue(meta: unknown): unknown {
  let text: string | undefined;
  try {
    text = JSON.stringify(meta === undefined ? null : meta);
  } catch (cause) {
    throw new CheckpointError('invalid_input', `meta is not JSON-serializable: ${errorMessage(cause)}`, {
      cause,
    });
  }
  if (text === undefined)
    throw new CheckpointError('invalid_input', `meta is not JSON-serializable (a ${typeof meta})`);
  return JSON.parse(text);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function swap32InPlace(bytes: Uint8Array): void {
  for (let i = 0; i + 3 < bytes.length; i += 4) {
    const a = bytes[i];
    const b = bytes[i + 1];
    bytes[i] = bytes[i + 3];
    bytes[i + 1] = bytes[i + 2];
    bytes[i + 2] = b;
    bytes[i + 3] = a;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
