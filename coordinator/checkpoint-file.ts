/**
 * One checkpoint = one self-describing, self-checking file, signed when the run has a secret.
 *
 * Layout (all integers little-endian):
 *
 *   offset 0   "GFCK"                magic, 4 bytes
 *   offset 4   u8 format version     2 (1 is still read: unsigned files written before signing)
 *   offset 5   3 zero bytes          reserved, must be zero
 *   offset 8   u32 header length     bytes of UTF-8 JSON that follow
 *   offset 12  header                UTF-8 JSON (exactly as JSON.stringify writes it)
 *              zero padding          up to the next multiple of 8 (from the file start)
 *   payload    float32 tensors       back to back, each 4-byte aligned, little-endian
 *
 * The header is `{ meta, tensors: [{ name, offset, length }], payloadBytes, sha256, signature }`
 * (version 1: without `signature`): `offset` is in bytes from the start of the payload, `length` in
 * float32 values. `sha256` (lowercase hex) is the hash of the canonical JSON (keys sorted) of
 * `{ meta, tensors, payloadBytes }` followed by the payload bytes, so it covers the meta, the tensor
 * table and every tensor value.
 *
 * `signature` is null (no secret), or `{ key, hmac }`: `hmac` = HMAC-SHA256(K, "gradfleet checkpoint v2 "
 * ‖ sha256), K = HKDF-SHA256 of the run's secret under its own label (CheckpointKey), and `key` names K
 * (the first 16 hex digits of HMAC(K, "key id")), so that a file signed with another secret is told
 * apart from one altered after signing. The SHA-256 finds damage; the HMAC finds forgery: a file
 * re-encoded with other weights and a fresh SHA-256 does not carry a valid HMAC without the secret.
 *
 * Every other byte is pinned as well: the reserved bytes and the padding must be zero, the file must
 * end exactly where the payload ends, and the header must be byte-for-byte what JSON.stringify
 * writes for its parsed value (so a flip that leaves the JSON meaning unchanged, e.g. `1e5` → `1E5`,
 * is still caught). Any single flipped bit anywhere in the file makes decoding fail.
 *
 * Error messages name positions, sizes and the format version, never bytes or strings of the file: a
 * path that is not a checkpoint (say, a checkpoint naming /etc/passwd) is not echoed into a log.
 *
 * `meta` is stored as JSON: it goes through JSON.stringify/JSON.parse on encode, so `undefined`
 * becomes `null`, non-finite numbers become `null`, `toJSON` (e.g. Date) applies, and so on. What
 * decodeCheckpoint returns is exactly that JSON value.
 */
import { createHash, createHmac } from 'node:crypto';
import { endianness } from 'node:os';
import { type SharedSecret, proofsMatch } from '../protocol/auth.js';

const CHECKPOINT_MAGIC = 'GFCK';
/** Written; version 1 (no signature field) is still read. */
const CHECKPOINT_FORMAT_VERSION = 2;
const UNSIGNED_FORMAT_VERSION = 1;

/** magic (4) + version (1) + reserved (3) + header length (4). */
const PREAMBLE_BYTES = 12;
const MAGIC_BYTES = new TextEncoder().encode(CHECKPOINT_MAGIC);
const LITTLE_ENDIAN_HOST = endianness() === 'LE';
const SHA256_HEX = /^[0-9a-f]{64}$/;
const HEADER_KEYS = ['meta', 'tensors', 'payloadBytes', 'sha256', 'signature'];
const V1_HEADER_KEYS = ['meta', 'tensors', 'payloadBytes', 'sha256'];
const ENTRY_KEYS = ['name', 'offset', 'length'];
const SIGNATURE_KEYS = ['key', 'hmac'];
const KEY_ID_HEX = /^[0-9a-f]{16}$/;

export type CheckpointErrorCode =
  | 'bad_magic'
  | 'unsupported_version'
  | 'truncated'
  | 'trailing_bytes'
  | 'bad_header'
  | 'bad_tensor_table'
  | 'checksum_mismatch'
  | 'wrong_key'
  | 'bad_signature'
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

/**
 * The key that signs a run's checkpoints: HKDF-SHA256 over the run's secret with a label of its own, so it
 * says nothing about the session keys (protocol/sealing.ts), nor they about it. Never logged.
 */
export class CheckpointKey {
  readonly #key: Buffer;
  /** Names the key (not the secret): 16 hex digits of HMAC(key, "key id"). */
  readonly id: string;

  private constructor(key: Buffer) {
    this.#key = key;
    this.id = this.#mac('key id').slice(0, 16);
  }

  static fromSecret(secret: SharedSecret): CheckpointKey {
    return new CheckpointKey(
      secret.deriveKey(
        Buffer.from('gradfleet checkpoints', 'utf8'),
        Buffer.from('gradfleet checkpoint hmac v1'),
      ),
    );
  }

  /** The signature of a file whose content hashes to `sha256` (hex). */
  sign(sha256: string): string {
    return this.#mac(`gradfleet checkpoint v2 ${sha256}`);
  }

  toString(): string {
    return '[checkpoint key]';
  }

  toJSON(): string {
    return '[checkpoint key]';
  }

  #mac(text: string): string {
    return createHmac('sha256', this.#key).update(text, 'utf8').digest('hex');
  }
}

/**
 * Who vouches for a checkpoint's content. unsigned: nobody (written without a secret, or before
 * checkpoints were signed; `keyGiven`: whether a key was there to expect a signature); verified: signed
 * with the key given; unverified: signed (with key `key`), and no key was given to check it. A file
 * signed with another key, or altered after signing, does not decode.
 */
export type CheckpointSignature =
  | { state: 'unsigned'; keyGiven: boolean }
  | { state: 'verified'; key: string }
  | { state: 'unverified'; key: string };

export interface DecodedCheckpoint {
  meta: unknown;
  tensors: Record<string, Float32Array>;
  signature: CheckpointSignature;
}

/** `key`: sign the file (the run has a secret); without it the file is unsigned. */
export function encodeCheckpoint(
  meta: unknown,
  tensors: Record<string, Float32Array>,
  key?: CheckpointKey,
): Uint8Array {
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

  // The hash and the HMAC are always 64 hex characters, so the header's size is known before they are.
  const placeholder = key ? { key: key.id, hmac: '0'.repeat(64) } : null;
  const headerSize = utf8(headerText(jsonMeta, table, payloadBytes, '0'.repeat(64), placeholder)).length;
  const payloadStart = align8(PREAMBLE_BYTES + headerSize);
  const out = new Uint8Array(payloadStart + payloadBytes);

  for (let i = 0; i < arrays.length; i++) {
    const array = arrays[i];
    const at = payloadStart + table[i].offset;
    out.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), at);
    if (!LITTLE_ENDIAN_HOST) swap32InPlace(out.subarray(at, at + array.byteLength));
  }
  const sha256 = digest(jsonMeta, table, payloadBytes, out.subarray(payloadStart));
  const signature = key ? { key: key.id, hmac: key.sign(sha256) } : null;
  const header = utf8(headerText(jsonMeta, table, payloadBytes, sha256, signature));
  if (header.length !== headerSize) throw new Error('checkpoint header changed size while hashing');

  out.set(MAGIC_BYTES, 0);
  out[4] = CHECKPOINT_FORMAT_VERSION;
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(8, header.length, true);
  out.set(header, PREAMBLE_BYTES);
  return out;
}

/**
 * The checkpoint in `bytes`, checked; `key`: the key its signature must verify with (see
 * CheckpointSignature). Every failure is a CheckpointError.
 */
export function decodeCheckpoint(bytes: Uint8Array, key?: CheckpointKey): DecodedCheckpoint {
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
        `bad magic: not a gradfleet checkpoint (it does not start with "${CHECKPOINT_MAGIC}")`,
      );
    }
  }
  if (bytes.length < PREAMBLE_BYTES) {
    throw new CheckpointError(
      'truncated',
      `truncated: file is ${bytes.length} bytes, shorter than the ${PREAMBLE_BYTES}-byte preamble`,
    );
  }
  const version = bytes[4];
  if (version !== CHECKPOINT_FORMAT_VERSION && version !== UNSIGNED_FORMAT_VERSION) {
    throw new CheckpointError(
      'unsupported_version',
      `unknown checkpoint format version ${version} (this build reads versions ${UNSIGNED_FORMAT_VERSION} and ${CHECKPOINT_FORMAT_VERSION}; a newer gradfleet wrote it?)`,
    );
  }
  if (bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new CheckpointError('bad_header', 'reserved bytes 5..7 are not zero');
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
    // JSON.parse's message quotes the text: not repeated.
    throw new CheckpointError('bad_header', 'header is not JSON', { cause });
  }
  const header = checkHeaderShape(
    parsed,
    version === CHECKPOINT_FORMAT_VERSION ? HEADER_KEYS : V1_HEADER_KEYS,
  );
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
      "checksum mismatch: the content does not hash to the header's sha256 (the file is damaged)",
    );
  }
  const signature = checkSignature(header.signature ?? null, header.sha256, key);

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
  return { meta: header.meta, tensors, signature };
}

interface SignatureField {
  key: string;
  hmac: string;
}

interface Header {
  meta: unknown;
  tensors: TensorEntry[];
  payloadBytes: number;
  sha256: string;
  /** Absent in version 1. */
  signature?: SignatureField | null;
}

/** Who vouches for a file whose content hashes to `sha256`, or why it must not be loaded. */
function checkSignature(
  signature: SignatureField | null,
  sha256: string,
  key: CheckpointKey | undefined,
): CheckpointSignature {
  if (signature === null) return { state: 'unsigned', keyGiven: key !== undefined };
  if (!key) return { state: 'unverified', key: signature.key };
  if (signature.key !== key.id)
    throw new CheckpointError(
      'wrong_key',
      "signed with another secret than the one given: give the run's own secret (--secret-file or GRADFLEET_SECRET)",
    );
  if (!proofsMatch(Buffer.from(key.sign(sha256), 'hex'), Buffer.from(signature.hmac, 'hex')))
    throw new CheckpointError(
      'bad_signature',
      'altered after it was signed: its signature does not match its content',
    );
  return { state: 'verified', key: key.id };
}

function checkHeaderShape(value: unknown, fields: readonly string[]): Header {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CheckpointError('bad_header', 'header is not a JSON object');
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  const missing = fields.filter((k) => !keys.includes(k));
  const extra = keys.filter((k) => !fields.includes(k));
  if (missing.length > 0 || extra.length > 0) {
    // The expected names only: a field the file adds is counted, not quoted.
    const problems = missing.map((k) => `missing "${k}"`);
    if (extra.length > 0) problems.push(`${extra.length} unexpected field(s)`);
    throw new CheckpointError('bad_header', `header fields wrong: ${problems.join(', ')}`);
  }
  if (!isCount(record.payloadBytes)) {
    throw new CheckpointError('bad_header', 'header payloadBytes must be a non-negative integer');
  }
  if (typeof record.sha256 !== 'string' || !SHA256_HEX.test(record.sha256)) {
    throw new CheckpointError('bad_header', 'header sha256 must be 64 lowercase hex characters');
  }
  if ('signature' in record && record.signature !== null) checkSignatureShape(record.signature);
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
        `tensor table entry ${i}: offset and length must be non-negative integers`,
      );
    }
  });
  return record as unknown as Header;
}

function checkSignatureShape(value: unknown): void {
  const record = value as Record<string, unknown>;
  if (
    value === null ||
    typeof value !== 'object' ||
    Array.isArray(value) ||
    Object.keys(record).length !== SIGNATURE_KEYS.length ||
    !SIGNATURE_KEYS.every((k) => k in record) ||
    typeof record.key !== 'string' ||
    !KEY_ID_HEX.test(record.key) ||
    typeof record.hmac !== 'string' ||
    !SHA256_HEX.test(record.hmac)
  )
    throw new CheckpointError(
      'bad_header',
      'header signature must be null or { key: 16 hex digits, hmac: 64 lowercase hex digits }',
    );
}

/** Entries are named by their place in the table, not by their names (the file's own strings). */
function checkTensorTable(table: TensorEntry[], payloadBytes: number): void {
  const seen = new Map<string, number>();
  table.forEach(({ name, offset, length }, i) => {
    const twin = seen.get(name);
    if (twin !== undefined)
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor table entries ${twin} and ${i} have the same name`,
      );
    seen.set(name, i);
    if (offset % 4 !== 0)
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor table entry ${i}: offset ${offset} is not 4-byte aligned`,
      );
    if (offset + length * 4 > payloadBytes) {
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor table entry ${i} out of range: bytes ${offset}..${offset + length * 4} but the payload has ${payloadBytes}`,
      );
    }
  });
  const occupied = table
    .map((t, i) => ({ ...t, i }))
    .filter((t) => t.length > 0)
    .sort((a, b) => a.offset - b.offset);
  for (let k = 1; k < occupied.length; k++) {
    const prev = occupied[k - 1];
    const cur = occupied[k];
    if (prev.offset + prev.length * 4 > cur.offset) {
      throw new CheckpointError(
        'bad_tensor_table',
        `tensor table entries ${prev.i} and ${cur.i} overlap at payload offset ${cur.offset}`,
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

function headerText(
  meta: unknown,
  tensors: TensorEntry[],
  payloadBytes: number,
  sha256: string,
  signature: SignatureField | null,
): string {
  // Key order here is the order decodeCheckpoint's canonical-form check expects.
  return JSON.stringify({
    meta,
    tensors: tensors.map(({ name, offset, length }) => ({ name, offset, length })),
    payloadBytes,
    sha256,
    signature,
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
