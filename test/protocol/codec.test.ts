import { pack as defaultPack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_FRAME_BYTES,
  PREAMBLE,
  PROTOCOL_VERSION,
  assertFinite,
  decodeFrame,
  encodeFrame,
  packHeader as pack,
} from '../../protocol/codec.js';
import { ProtocolError, REJECT_REASONS, type RejectReason } from '../../protocol/errors.js';
import { MAX_DATASET_SAMPLES, type Message, messageSchema } from '../../protocol/messages.js';
import { MESSAGE_SAMPLES } from '../helpers/message-samples.js';

const samples = MESSAGE_SAMPLES;

function rejection(bytes: Uint8Array, maxFrameBytes?: number): RejectReason | 'accepted' {
  try {
    decodeFrame(bytes, { maxFrameBytes });
    return 'accepted';
  } catch (err) {
    if (err instanceof ProtocolError) return err.reason;
    throw err; // anything but a ProtocolError is a crash
  }
}

describe('frames', () => {
  it('has a round-trip sample for every message type', () => {
    const types = messageSchema.options.map((schema) => schema.shape.type.value);
    expect(new Set(samples.map(([m]) => m.type))).toEqual(new Set(types));
  });

  it.each(samples)('round-trips %j', (message, values) => {
    const payload = Float32Array.from({ length: values }, (_, i) => (i - 2.5) * 1e-3);
    const frame = decodeFrame(encodeFrame(message, payload));
    expect(frame.message).toEqual(message);
    expect(frame.payload).toEqual(payload);
  });

  it('carries float32 bit-exactly and decodes an aligned payload as a view, not a copy', () => {
    const payload = Float32Array.of(1.5, 2.5, -3, 100.25, 1e-30, -0, 3.4e38);
    const bytes = encodeFrame({ type: 'weights', version: 1, payloadValues: payload.length }, payload);
    const { payload: out } = decodeFrame(bytes);
    expect(out.buffer).toBe(bytes.buffer);
    expect(new Uint8Array(out.buffer, out.byteOffset, out.byteLength)).toEqual(
      new Uint8Array(payload.buffer),
    );
  });

  it('copies once when a transport hands over an unaligned buffer', () => {
    const payload = Float32Array.of(1, 2, 3);
    const bytes = encodeFrame({ type: 'weights', version: 1, payloadValues: 3 }, payload);
    const shifted = new Uint8Array(bytes.length + 1).subarray(1);
    shifted.set(bytes);
    expect(decodeFrame(shifted).payload).toEqual(payload);
    // A Node Buffer's slice() is a view of its (shared) pool, not a copy: the decoder must not use it.
    for (let shift = 1; shift < 4; shift++) {
      const pooled = Buffer.alloc(bytes.length + 7).subarray(shift, shift + bytes.length);
      pooled.set(bytes);
      expect(decodeFrame(pooled).payload).toEqual(payload);
    }
  });

  it('never sends a tensor through msgpack: the msgpackr trap is real, and a typed array smuggled into a header is refused', () => {
    // msgpackr's default pack() writes a Float32Array as bin through Uint8Array.set, one byte per
    // float. Pinned here so that the day it stops (or the codec starts relying on it) is noticed.
    const floats = Float32Array.of(1.5, 2.5, -3, 100.25);
    const roundTripped = unpack(defaultPack(floats)) as Uint8Array;
    expect(Array.from(roundTripped.subarray(0, 4))).toEqual([1, 2, 253, 100]);
    expect(roundTripped).not.toEqual(new Uint8Array(floats.buffer));
    expect(
      decodeFrame(encodeFrame({ type: 'weights', version: 1, payloadValues: 4 }, floats)).payload,
    ).toEqual(floats);
    const bad = { type: 'heartbeat', sentAt: Float32Array.of(1.5) } as unknown as Message;
    expect(() => encodeFrame(bad)).toThrow();
  });

  it('refuses to encode a payload that does not match its declared size', () => {
    expect(() => encodeFrame({ type: 'weights', version: 1, payloadValues: 4 }, new Float32Array(3))).toThrow(
      /declares 4 payload values, got 3/,
    );
  });
});

describe('rejections, each with its reason', () => {
  const good = encodeFrame(
    {
      type: 'contribution',
      step: 1,
      level: 1,
      index: 0,
      lossSum: 0.5,
      correct: 3,
      samples: 4,
      computeSeconds: 0.1,
      payloadValues: 4,
    },
    Float32Array.of(1, 2, 3, 4),
  );
  const mutate = (f: (b: Uint8Array) => void) => {
    const b = good.slice();
    f(b);
    return b;
  };

  it.each<[string, Uint8Array, RejectReason]>([
    ['empty', new Uint8Array(0), 'too_short'],
    ['wrong magic', mutate((b) => (b[0] = 0x58)), 'bad_magic'],
    ['unknown version', mutate((b) => (b[4] = PROTOCOL_VERSION + 1)), 'unknown_version'],
    [
      'header length past the end',
      mutate((b) => new DataView(b.buffer).setUint32(8, 1e6, true)),
      'bad_header_length',
    ],
    ['garbage header', mutate((b) => b.fill(0xc1, 12, 20)), 'malformed_header'],
    ['truncated payload', good.slice(0, good.length - 4), 'wrong_payload_size'],
    ['payload not whole floats', good.slice(0, good.length - 1), 'misaligned_payload'],
  ])('%s', (_, bytes, reason) => {
    expect(rejection(bytes)).toBe(reason);
  });

  it('an unknown message type or a bad field is invalid_message', () => {
    expect(rejection(encodeRaw({ type: 'teleport' }))).toBe('invalid_message');
    expect(rejection(encodeRaw({ type: 'assign', step: -1, weightsVersion: 0, first: 0, count: 1 }))).toBe(
      'invalid_message',
    );
  });

  it('a welcome naming a data set too large to allocate is invalid_message', () => {
    const [welcome] = samples.find(([m]) => m.type === 'welcome')!;
    const withCount = (count: number) =>
      encodeRaw({
        ...welcome,
        train: { ...(welcome as Extract<Message, { type: 'welcome' }>).train, count },
      });
    expect(rejection(withCount(MAX_DATASET_SAMPLES))).toBe('accepted');
    expect(rejection(withCount(MAX_DATASET_SAMPLES + 1))).toBe('invalid_message');
    // The bound is on bytes: bigger images allow fewer of them.
    const withShape = (count: number, side: number) =>
      encodeRaw({
        ...welcome,
        train: {
          ...(welcome as Extract<Message, { type: 'welcome' }>).train,
          count,
          height: side,
          width: side,
        },
      });
    expect(rejection(withShape(MAX_DATASET_SAMPLES / 4, 56))).toBe('accepted');
    expect(rejection(withShape(MAX_DATASET_SAMPLES / 4 + 1, 56))).toBe('invalid_message');
  });

  it('a frame over the size limit is too_large', () => {
    expect(rejection(good, good.length - 1)).toBe('too_large');
    expect(DEFAULT_MAX_FRAME_BYTES).toBeGreaterThan(3_488_874 * 4);
  });

  it('non-finite gradients are caught with the position of the first bad value', () => {
    expect(() => assertFinite(Float32Array.of(1, NaN), 'gradient')).toThrow(
      /non_finite: gradient: value 1 is NaN/,
    );
    expect(() => assertFinite(Float32Array.of(Infinity), 'gradient')).toThrow(ProtocolError);
    expect(() => assertFinite(Float32Array.of(1, 2), 'gradient')).not.toThrow();
  });

  it('random bytes and mutated frames are refused with a known reason (and bytes short of a preamble as too_short), never a crash', () => {
    let seed = 12345;
    const next = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const bytes =
        next() < 0.5
          ? Uint8Array.from({ length: Math.floor(next() * 64) }, () => next() * 256)
          : good.slice();
      for (let k = 0; k < 3; k++) bytes[Math.floor(next() * bytes.length)] = next() * 256;
      const r = rejection(bytes);
      expect([...REJECT_REASONS, 'accepted']).toContain(r);
      if (bytes.length < PREAMBLE) expect(r).toBe('too_short');
      // Random bytes almost never carry the magic: a frame is accepted only if it still starts like one.
      if (r === 'accepted')
        expect(Buffer.from(bytes.subarray(0, 4)).equals(Buffer.from(good.subarray(0, 4)))).toBe(true);
      outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
    }
    // The mix exercises the decoder's checks, not just its first one.
    expect(outcomes.get('too_short')).toBeGreaterThan(0);
    expect(outcomes.get('bad_magic')).toBeGreaterThan(0);
    expect(outcomes.size).toBeGreaterThanOrEqual(4);
  });
});

/** A frame around any header object, bypassing encodeFrame's own validation. */
function encodeRaw(header: object): Uint8Array {
  const h = pack(header);
  const frame = new Uint8Array((12 + h.length + 3) & ~3);
  const view = new DataView(frame.buffer);
  view.setUint32(0, 0x544c4647, true);
  view.setUint8(4, PROTOCOL_VERSION);
  view.setUint32(8, h.length, true);
  frame.set(h, 12);
  return frame;
}
