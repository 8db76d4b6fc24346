/**
 * Frames: a fixed 12-byte preamble, a msgpack header (one Message), zero padding to a 4-byte
 * boundary, then the tensor payload as raw little-endian values of the payload dtype.
 *
 *   0  magic "GFLT"   4  u8 protocol version   5  u8 payload dtype   6  2 bytes zero
 *   8  u32 LE header length   12  header…
 *
 * Payload dtype (wire-dtype.ts): 0 float32, 1 IEEE binary16, 2 bfloat16. The payload holds the
 * message's `payloadValues` values of that dtype, then zero bytes up to a 4-byte boundary (2 of them
 * for an odd count of 16-bit values); any other length, or nonzero padding, is wrong_payload_size.
 * Dtype 0 is the original layout: a version-1 frame with byte 5 = 0 decodes exactly as before.
 * Decoding always yields float32: a view of the frame's bytes for f32, a converted copy otherwise.
 *
 * Why not msgpack for the tensors: msgpack libraries disagree on typed arrays (msgpackr's default
 * pack() silently turns every float of a Float32Array into one byte), and a payload behind an
 * aligned offset decodes as a Float32Array view of the received bytes (~0.001 ms for 14 MB)
 * instead of a copy. The header codec is msgpackr as plain msgpack: no records (a structure
 * definition is per-message state a peer could otherwise plant) and maps decoded as objects.
 */
import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError } from './errors.js';
import { type Message, declaredPayloadValues, messageSchema } from './messages.js';
import {
  type WireDtype,
  bytesPerValue,
  decodeHalf,
  encodeHalf,
  wireDtypeCode,
  wireDtypeFromCode,
} from './wire-dtype.js';

export const PROTOCOL_VERSION = 1;
const MAGIC = 0x544c4647; // "GFLT" read as u32 LE
/** Bytes before the header: magic (4), version, dtype, 2 reserved, header length (4). */
export const PREAMBLE = 12;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

const plainMsgpack = { useRecords: false, mapsAsObjects: true } as const;
const headerPackr = new Packr(plainMsgpack);
const headerUnpackr = new Unpackr(plainMsgpack);
/**
 * A header's msgpack bytes, in a buffer of their own (msgpackr's pack() returns a view of a buffer it
 * reuses; encodeFrame copies that view at once). Exported so that tests can build hostile headers.
 */
export const packHeader = (header: unknown): Uint8Array => Uint8Array.from(headerPackr.pack(header));
const unpackHeader = (bytes: Uint8Array): unknown => headerUnpackr.unpack(bytes);

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error('gradfleet needs a little-endian host: tensors travel as raw little-endian float32');
}

export interface Frame<M extends Message = Message> {
  message: M;
  /**
   * Empty when the message carries no tensor. For f32, a view of the frame's bytes when aligned,
   * else a copy; for f16/bf16, a float32 copy widened from the wire values.
   */
  payload: Float32Array;
  /** How the payload travelled. */
  dtype: WireDtype;
}

export interface EncodeOptions {
  /** Payload dtype on the wire (default f32: bit-exact). f16/bf16 round to nearest even. */
  dtype?: WireDtype;
}

// Plain arithmetic, not `(n + 3) & ~3`: that wraps at 2^32, and a peer's payloadValues ≥ 2^31 (16-bit values)
// made it 0.
export const align4 = (n: number) => Math.ceil(n / 4) * 4;

/**
 * Where the payload starts after a header of `headerLength` bytes (4-byte aligned, for Float32Array views).
 */
export const payloadOffset = (headerLength: number) => align4(PREAMBLE + headerLength);

/**
 * Writes the preamble into the first PREAMBLE bytes of `frame`. Exported so that tests can build the
 * frames encodeFrame refuses to (lying lengths, unknown dtypes), as a hostile peer could.
 */
export function writePreamble(frame: Uint8Array, dtypeCode: number, headerLength: number): void {
  const view = new DataView(frame.buffer, frame.byteOffset, PREAMBLE);
  view.setUint32(0, MAGIC, true);
  view.setUint8(4, PROTOCOL_VERSION);
  view.setUint8(5, dtypeCode);
  view.setUint32(8, headerLength, true);
}

export function encodeFrame(
  message: Message,
  payload: Float32Array = new Float32Array(0),
  options: EncodeOptions = {},
): Uint8Array {
  const dtype = options.dtype ?? 'f32';
  const code = wireDtypeCode(dtype);
  if (code === undefined)
    throw new ProtocolError('unknown_dtype', `cannot encode a payload as ${String(dtype)}`);
  const checked = messageSchema.parse(message);
  const declared = declaredPayloadValues(checked);
  if (declared !== payload.length) {
    throw new ProtocolError(
      'wrong_payload_size',
      `${message.type} declares ${declared} payload values, got ${payload.length}`,
    );
  }
  const header = headerPackr.pack(checked); // a view of msgpackr's buffer: copied into the frame below
  const payloadAt = payloadOffset(header.length);
  // zeroed: padding included
  const frame = new Uint8Array(payloadAt + align4(payload.length * bytesPerValue(dtype)));
  writePreamble(frame, code, header.length);
  frame.set(header, PREAMBLE);
  if (dtype === 'f32')
    frame.set(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength), payloadAt);
  else encodeHalf(dtype, payload, new Uint16Array(frame.buffer, payloadAt, payload.length));
  return frame;
}

export interface DecodeOptions {
  maxFrameBytes?: number;
}

export function decodeFrame(bytes: Uint8Array, options: DecodeOptions = {}): Frame {
  const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (bytes.length < PREAMBLE)
    throw new ProtocolError(
      'too_short',
      `frame of ${bytes.length} bytes is shorter than the ${PREAMBLE}-byte preamble`,
    );
  if (bytes.length > max)
    throw new ProtocolError('too_large', `frame of ${bytes.length} bytes exceeds the limit of ${max}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new ProtocolError('bad_magic', 'not a gradfleet frame');
  const version = view.getUint8(4);
  if (version !== PROTOCOL_VERSION)
    throw new ProtocolError(
      'unknown_version',
      `protocol version ${version}, this build speaks ${PROTOCOL_VERSION}`,
    );
  const dtype = wireDtypeFromCode(view.getUint8(5));
  if (dtype === undefined)
    throw new ProtocolError(
      'unknown_dtype',
      `payload dtype code ${view.getUint8(5)} is not one of 0 (f32), 1 (f16), 2 (bf16)`,
    );
  const headerLength = view.getUint32(8, true);
  if (headerLength === 0 || PREAMBLE + headerLength > bytes.length) {
    throw new ProtocolError(
      'bad_header_length',
      `header length ${headerLength} does not fit a ${bytes.length}-byte frame`,
    );
  }
  let raw: unknown;
  try {
    raw = unpackHeader(bytes.subarray(PREAMBLE, PREAMBLE + headerLength));
  } catch (err) {
    throw new ProtocolError('malformed_header', (err as Error).message);
  }
  const parsed = messageSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProtocolError('invalid_message', `${issue.path.join('.') || 'message'}: ${issue.message}`);
  }
  const message = parsed.data;
  const payloadAt = payloadOffset(headerLength);
  if (bytes.length < payloadAt)
    throw new ProtocolError(
      'misaligned_payload',
      `frame ends inside the header's padding (${bytes.length} of ${payloadAt} bytes)`,
    );
  const payloadBytes = bytes.length - payloadAt;
  if (payloadBytes % 4 !== 0)
    throw new ProtocolError(
      'misaligned_payload',
      `payload of ${payloadBytes} bytes is not padded to 4 bytes`,
    );
  const declared = declaredPayloadValues(message);
  const offset = bytes.byteOffset + payloadAt;
  if (dtype === 'f32') {
    const values = payloadBytes / 4;
    if (values !== declared)
      throw new ProtocolError(
        'wrong_payload_size',
        `${message.type} declares ${declared} payload values, frame has ${values}`,
      );
    const payload =
      offset % 4 === 0
        ? new Float32Array(bytes.buffer, offset, values)
        : // the transport handed us unaligned bytes: one copy
          new Float32Array(copyOf(bytes, payloadAt, bytes.length).buffer);
    return { message, payload, dtype };
  }
  const valueBytes = declared * bytesPerValue(dtype);
  if (payloadBytes !== align4(valueBytes)) {
    throw new ProtocolError(
      'wrong_payload_size',
      `${message.type} declares ${declared} ${dtype} payload values (${align4(valueBytes)} bytes padded), frame has ${payloadBytes} bytes`,
    );
  }
  for (let i = payloadAt + valueBytes; i < bytes.length; i++) {
    if (bytes[i] !== 0)
      throw new ProtocolError(
        'wrong_payload_size',
        `nonzero padding after ${declared} ${dtype} payload values`,
      );
  }
  const wire =
    offset % 2 === 0
      ? new Uint16Array(bytes.buffer, offset, declared)
      : new Uint16Array(copyOf(bytes, payloadAt, payloadAt + valueBytes).buffer); // odd offset: one copy
  return { message, payload: decodeHalf(dtype, wire, new Float32Array(declared)), dtype };
}

/** Index of the first NaN or ±Infinity, or -1: gradients and weights must be finite. */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return i;
  return -1;
}

/** Throws naming the first bad value's position, which makes the log useful. */
export function assertFinite(payload: Float32Array, what: string): void {
  const bad = firstNonFinite(payload);
  if (bad >= 0) throw new ProtocolError('non_finite', `${what}: value ${bad} is ${payload[bad]}`);
}

/** A copy in a fresh ArrayBuffer. Not bytes.slice(): on a Node Buffer that is a view of a shared pool. */
function copyOf(bytes: Uint8Array, start: number, end: number): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, start, end);
}
