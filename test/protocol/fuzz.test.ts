/**
 * Fuzzing of every decoder that reads bytes written by another process or found in a file: random
 * bytes and mutated valid inputs (the issue asks for ≥ 100k cases per run; RUNS below adds up to
 * well over that, ≥ 100k of them for the frame decoder alone).
 *
 * Each decoder must either accept, and then hand back something consistent with its format, or
 * refuse with its own typed error. Anything else fails: a TypeError/RangeError from inside, a
 * result that differs from the input it claims to be, an allocation sized by what a header claims
 * rather than by the bytes that came. Every rejection is counted by reason, and one line per
 * decoder is printed at the end (cases, accepted, rejected by reason).
 *
 * Seeds are random per run: on a failure fast-check prints the seed and the shrunk input.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { crc32, gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from 'nats';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { CheckpointError, decodeCheckpoint, encodeCheckpoint } from '../../coordinator/checkpoint-file.js';
import { Channel, RejectionCounts } from '../../protocol/channel.js';
import { type ChunkInfo, Reassembler, chunkFrame } from '../../protocol/chunking.js';
import {
  type Frame,
  PREAMBLE,
  align4,
  assertFinite,
  decodeFrame,
  encodeFrame,
  firstNonFinite,
  packHeader as pack,
  payloadOffset,
  writePreamble,
} from '../../protocol/codec.js';
import {
  ProtocolError,
  REJECT_REASONS,
  type RejectReason,
  TRANSPORT_REJECT_REASONS,
} from '../../protocol/errors.js';
import {
  COORDINATOR_MESSAGE_TYPES,
  type MessageOf,
  SHARD_MESSAGE_TYPES,
  TO_SHARD_MESSAGE_TYPES,
  WORKER_MESSAGE_TYPES,
  dataChunkSchema,
  declaredPayloadValues,
  messageSchema,
} from '../../protocol/messages.js';
import { NatsLink } from '../../protocol/nats-link.js';
import { WIRE_DTYPES, bytesPerValue } from '../../protocol/wire-dtype.js';
import { MNIST_SHAPE, createDataset, fingerprint } from '../../training/data/dataset.js';
import { DataError } from '../../training/data/errors.js';
import { encodeIdx, parseIdx } from '../../training/data/idx.js';
import { parseKaggleCsv } from '../../training/data/kaggle-csv.js';
import { loadMnistFiles } from '../../training/data/mnist.js';
import { Rng } from '../../training/rng.js';
import { DatasetReceiver } from '../../worker/dataset-receiver.js';
import { MemoryLink } from '../helpers/memory-link.js';
import { MESSAGE_SAMPLES } from '../helpers/message-samples.js';

/**
 * numRuns per property: 107k for the frame decoder's own properties, 160k in all (the Channel, chunk and
 * data-set properties feed several inputs per run).
 */
const RUNS = {
  frameRandom: 20_000,
  framePreamble: 15_000,
  frameStructured: 15_000,
  frameMutated: 55_000,
  frameHugeClaims: 2_000,
  channel: 3_000,
  reassembler: 3_000,
  natsLink: 1_500,
  idxRandom: 5_000,
  idxMutated: 10_000,
  mnistFiles: 300,
  csvMutated: 6_000,
  csvRandom: 2_000,
  checkpointMutated: 12_000,
  checkpointRandom: 2_000,
  checkpointStructured: 5_000,
  receiver: 3_000,
};

// A real gc() (V8's flag, set at run time), so memory is compared after collection, not by luck.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MB = 1024 * 1024;

/** Bytes held on the heap and in ArrayBuffers after a full collection. */
function liveBytes(): number {
  gc();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

// ---------------------------------------------------------------------------------------------
// Tallies: cases per decoder and rejections by reason (a RejectionCounts, as the roles keep).
// ---------------------------------------------------------------------------------------------

class Tally {
  tried = 0;
  accepted = 0;
  readonly rejected = new RejectionCounts();
  readonly notes: Record<string, number> = {};

  constructor(readonly name: string) {}

  accept(): void {
    this.tried++;
    this.accepted++;
  }

  reject(reason: string): void {
    this.tried++;
    this.rejected.record(reason);
  }

  note(what: string, n = 1): void {
    this.notes[what] = (this.notes[what] ?? 0) + n;
  }

  summary(): string {
    const reasons = Object.entries(this.rejected.byReason)
      .sort((a, b) => b[1] - a[1])
      .map(([r, n]) => `${r} ${n}`)
      .join(', ');
    const notes = Object.entries(this.notes)
      .map(([k, n]) => `; ${k} ${n}`)
      .join('');
    return `fuzz ${this.name}: ${this.tried} cases, ${this.accepted} accepted, ${this.rejected.total} rejected (${reasons || 'none'})${notes}`;
  }
}

const tallies = {
  frame: new Tally('decodeFrame'),
  channel: new Tally('Channel (frames received)'),
  reassembler: new Tally('Reassembler (chunks)'),
  natsLink: new Tally('NatsLink (NATS messages)'),
  idx: new Tally('parseIdx'),
  mnist: new Tally('loadMnistFiles'),
  csv: new Tally('parseKaggleCsv'),
  checkpoint: new Tally('decodeCheckpoint'),
  receiver: new Tally('DatasetReceiver (chunks)'),
};

afterAll(() => {
  for (const tally of Object.values(tallies)) console.log(tally.summary());
});

/**
 * An error's text with the specifics (values, numbers, hashes, the split) taken out: a reason to count by.
 */
function kindOf(problem: string, cut = true): string {
  const kind = problem
    .replace(/^train /, '')
    .replace(/ = .*? is /s, ' = … is ') // the offending field's value
    .replace(/ ".*$/s, '') // quoted input, and whatever follows it
    .replace(/\b[0-9a-f]{16,}\b/g, 'H')
    .replace(/0x[0-9a-f]+/gi, 'X')
    .replace(/\d+/g, 'N');
  return cut ? kind.split(/: |\(/)[0].trim().slice(0, 60) : kind.slice(0, 80);
}

// ---------------------------------------------------------------------------------------------
// Byte mutations shared by the binary formats.
// ---------------------------------------------------------------------------------------------

/** A u32 in the format's fixed header that says how long something is. */
interface LengthField {
  at: number;
  littleEndian: boolean;
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'extend'; bytes: Uint8Array }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'remove'; at: number; count: number }
  | { kind: 'field'; field: number; value: number }
  | { kind: 'splice'; at: number; donor: number; from: number; count: number };

const INTERESTING_U32 = [
  0, 1, 2, 3, 4, 7, 8, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_fff0, 0xffff_ffff,
];

/**
 * Mutations of a file whose first `head` bytes are its fixed header (hit more often: that is where lengths
 * live).
 */
function mutationArb(head: number): fc.Arbitrary<Mutation> {
  const at = fc.oneof(
    { weight: 1, arbitrary: fc.nat({ max: head - 1 }) },
    { weight: 3, arbitrary: fc.nat() },
  );
  const byte = fc.oneof(fc.constantFrom(0, 1, 2, 3, 0x7f, 0x80, 0xc1, 0xff), fc.nat({ max: 255 }));
  const u32 = fc.oneof(
    fc.constantFrom(...INTERESTING_U32),
    fc.nat({ max: 4096 }),
    fc.nat({ max: 0xffff_ffff }),
  );
  return fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at, bit: fc.nat({ max: 7 }) }),
    fc.record({ kind: fc.constant('set' as const), at, value: byte }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({
      kind: fc.constant('extend' as const),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
    }),
    fc.record({
      kind: fc.constant('insert' as const),
      at,
      bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
    }),
    fc.record({ kind: fc.constant('remove' as const), at, count: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('field' as const), field: fc.nat(), value: u32 }),
    fc.record({
      kind: fc.constant('splice' as const),
      at,
      donor: fc.nat(),
      from: fc.nat(),
      count: fc.integer({ min: 1, max: 64 }),
    }),
  );
}

/** `arb` in one case out of `n`, else null (fc.option cannot make null the common case). */
function oneIn<T>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: n - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Applies `mutations` to a copy of `base`; splices copy bytes from `donors` (other valid inputs). Always a
 * fresh, exact-size buffer.
 */
function mutate(
  base: Uint8Array,
  mutations: readonly Mutation[],
  fields: readonly LengthField[],
  donors: readonly Uint8Array[],
): Uint8Array {
  let b: Uint8Array = Uint8Array.from(base);
  for (const m of mutations) {
    const pos = (at: number) => (b.length === 0 ? 0 : at % b.length);
    switch (m.kind) {
      case 'flip':
        if (b.length > 0) b[pos(m.at)] ^= 1 << m.bit;
        break;
      case 'set':
        if (b.length > 0) b[pos(m.at)] = m.value;
        break;
      case 'truncate':
        b = b.slice(0, m.at % (b.length + 1));
        break;
      case 'extend':
        b = concat(b, m.bytes);
        break;
      case 'insert': {
        const p = m.at % (b.length + 1);
        b = concat(b.subarray(0, p), m.bytes, b.subarray(p));
        break;
      }
      case 'remove': {
        const p = pos(m.at);
        b = concat(b.subarray(0, p), b.subarray(p + m.count));
        break;
      }
      case 'field': {
        const f = fields[m.field % fields.length];
        if (f && f.at + 4 <= b.length) new DataView(b.buffer).setUint32(f.at, m.value, f.littleEndian);
        break;
      }
      case 'splice': {
        const donor = donors[m.donor % donors.length];
        const from = m.from % (donor.length + 1);
        const piece = donor.subarray(from, from + m.count);
        const p = m.at % (b.length + 1);
        b = concat(b.subarray(0, p), piece, b.subarray(Math.min(b.length, p + piece.length)));
        break;
      }
    }
  }
  return b;
}

/**
 * `bytes` `shift` bytes into a larger buffer, as a transport reading from a shared buffer hands
 * them over; shift 0 leaves them in an exact-size buffer of their own (no slack after the end).
 */
function place(bytes: Uint8Array, shift: number): Uint8Array {
  if (shift === 0) return bytes;
  const host = new Uint8Array(bytes.length + shift + 3);
  host.set(bytes, shift);
  return host.subarray(shift, shift + bytes.length);
}

const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** A value's bytes, for comparing Float32Arrays bit for bit (NaN payloads included). */
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

// ---------------------------------------------------------------------------------------------
// 1. Frames: decodeFrame, and the Channel's receive path around it.
// ---------------------------------------------------------------------------------------------

const FRAME_FIELDS: LengthField[] = [{ at: 8, littleEndian: true }];

/** One of every message type, with the number of payload values each carries. */
const SAMPLES = MESSAGE_SAMPLES;
const fingerprintHex = 'ab'.repeat(32);
const MESSAGE_TYPES = messageSchema.options.map((schema) => schema.shape.type.value);

const payloadOf = (n: number) => Float32Array.from({ length: n }, (_, i) => (i - 2.5) * 0.37 + i * 1e-3);
/** Every sample in every wire dtype: odd payload counts give f16/bf16 frames their 2 bytes of padding. */
const VALID_FRAMES = SAMPLES.flatMap(([message, n]) =>
  WIRE_DTYPES.map((dtype) => encodeFrame(message, payloadOf(n), { dtype })),
);

type Verdict = { ok: true; frame: Frame } | { ok: false; reason: RejectReason };

/**
 * decodeFrame's answer. Anything thrown that is not a ProtocolError with a known reason is a crash: rethrown,
 * it fails the property.
 */
function frameVerdict(bytes: Uint8Array, maxFrameBytes?: number): Verdict {
  try {
    return { ok: true, frame: decodeFrame(bytes, { maxFrameBytes }) };
  } catch (err) {
    if (err instanceof ProtocolError && (REJECT_REASONS as readonly string[]).includes(err.reason))
      return { ok: false, reason: err.reason };
    throw err;
  }
}

/**
 * What an accepted frame must be: a valid message, a payload of the declared size that the bytes could hold,
 * re-encodable.
 */
function checkAcceptedFrame(bytes: Uint8Array, frame: Frame): void {
  expect(messageSchema.safeParse(frame.message).success).toBe(true);
  expect(frame.payload).toBeInstanceOf(Float32Array);
  expect(frame.payload.length).toBe(declaredPayloadValues(frame.message));
  // No allocation beyond what the bytes imply: the values came from the bytes after the preamble.
  expect(frame.payload.length * bytesPerValue(frame.dtype)).toBeLessThanOrEqual(bytes.length - PREAMBLE);
  // The decoder accepts nothing the encoder could not have written.
  expect(decodeFrame(encodeFrame(frame.message, frame.payload, { dtype: frame.dtype })).message).toEqual(
    frame.message,
  );
}

/**
 * Runs one frame through the decoder and the checks above, counting the outcome in `counts` and the decoder's
 * tally.
 */
function judgeFrame(bytes: Uint8Array, counts: RejectionCounts, maxFrameBytes?: number): Verdict {
  const verdict = frameVerdict(bytes, maxFrameBytes);
  if (verdict.ok) {
    checkAcceptedFrame(bytes, verdict.frame);
    tallies.frame.accept();
  } else {
    counts.record(verdict.reason);
    tallies.frame.reject(verdict.reason);
  }
  return verdict;
}

/**
 * A frame around any header value and payload bytes, bypassing encodeFrame's checks: what a hostile peer can
 * send.
 */
function rawFrame(header: unknown, payload: Uint8Array = new Uint8Array(0), dtypeCode = 0): Uint8Array {
  return rawFrameAround(pack(header), payload, dtypeCode);
}

/** The same around header bytes that need not be msgpack at all. */
function rawFrameAround(header: Uint8Array, payload: Uint8Array, dtypeCode: number): Uint8Array {
  const at = payloadOffset(header.length);
  const frame = new Uint8Array(at + payload.length);
  writePreamble(frame, dtypeCode, header.length);
  frame.set(header, PREAMBLE);
  frame.set(payload, at);
  return frame;
}

/**
 * Runs a property over `numRuns` frames and checks the bookkeeping the issue asks for: every case
 * was either accepted or counted once under a known reason, and memory did not grow.
 */
function frameProperty<T>(
  arb: fc.Arbitrary<T>,
  numRuns: number,
  build: (value: T) => { bytes: Uint8Array; max?: number },
  extra?: (value: T, bytes: Uint8Array, verdict: Verdict) => void,
): RejectionCounts {
  const counts = new RejectionCounts();
  let accepted = 0;
  let rejected = 0;
  const before = liveBytes();
  fc.assert(
    fc.property(arb, (value) => {
      const { bytes, max } = build(value);
      const verdict = judgeFrame(bytes, counts, max);
      if (verdict.ok) accepted++;
      else rejected++;
      extra?.(value, bytes, verdict);
    }),
    { numRuns },
  );
  expect(accepted + rejected).toBe(numRuns);
  expect(counts.total).toBe(rejected);
  for (const reason of Object.keys(counts.byReason)) expect(REJECT_REASONS).toContain(reason);
  expect(liveBytes() - before).toBeLessThan(200 * MB);
  return counts;
}

/** Values of any type, for the fields of a header a peer made up. */
const anyFieldValue = fc.oneof(
  fc.nat(),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.constantFrom(
    0,
    -1,
    0.5,
    -0,
    2 ** 31,
    2 ** 32,
    Number.MAX_SAFE_INTEGER,
    2 ** 53 + 2,
    1e300,
    Number.NaN,
    Number.POSITIVE_INFINITY,
  ),
  fc.double(),
  fc.string({ maxLength: 12 }),
  fc.constantFrom<unknown>(
    ...MESSAGE_TYPES,
    'f16',
    'bf16',
    'fp64',
    'train',
    'test',
    fingerprintHex,
    'x'.repeat(200),
  ),
  fc.uint8Array({ maxLength: 40 }),
  fc.constant(new Uint8Array(32)),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.nat(), fc.string({ maxLength: 4 }), fc.constant('train')), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.nat(), { maxKeys: 3 }),
);
const FIELD_NAMES = [...new Set(messageSchema.options.flatMap((schema) => Object.keys(schema.shape)))];

describe('frame decoder: random bytes and mutated frames never crash it', () => {
  it(`random bytes (${RUNS.frameRandom} cases): accepted as a valid message or refused with a known reason`, () => {
    const arb = fc.record({
      bytes: fc.uint8Array({ maxLength: 160, size: 'max' }),
      max: fc.constantFrom(undefined, undefined, undefined, 64),
    });
    const counts = frameProperty(arb, RUNS.frameRandom, ({ bytes, max }) => ({ bytes, max }));
    expect(counts.byReason.bad_magic).toBeGreaterThan(0);
  });

  it(`random bytes behind a valid preamble (${RUNS.framePreamble} cases) reach the header and payload checks`, () => {
    const arb = fc.record({
      dtype: fc.integer({ min: 0, max: 3 }),
      claim: fc.oneof(
        fc.constant('exact' as const),
        fc.nat({ max: 200 }),
        fc.constantFrom(0, 2 ** 31, 2 ** 32 - 1),
      ),
      body: fc.uint8Array({ maxLength: 160, size: 'max' }),
      shift: fc.constantFrom(0, 1, 2),
    });
    const counts = frameProperty(arb, RUNS.framePreamble, ({ dtype, claim, body, shift }) => {
      const bytes = new Uint8Array(PREAMBLE + body.length);
      writePreamble(bytes, dtype, claim === 'exact' ? body.length : claim);
      bytes.set(body, PREAMBLE);
      return { bytes: place(bytes, shift) };
    });
    expect(counts.byReason.malformed_header).toBeGreaterThan(0);
  });

  it(`made-up headers (${RUNS.frameStructured} cases): any fields, any values, any payload size`, () => {
    const arb = fc.record({
      base: fc.nat({ max: SAMPLES.length - 1 }),
      overrides: fc.dictionary(fc.constantFrom(...FIELD_NAMES), anyFieldValue, { maxKeys: 3 }),
      drop: oneIn(4, fc.constantFrom(...FIELD_NAMES)),
      dtype: fc.integer({ min: 0, max: 3 }),
      payload: fc.oneof(
        { weight: 3, arbitrary: fc.constant('declared' as const) },
        { weight: 1, arbitrary: fc.nat({ max: 64 }) },
      ),
      fill: fc.nat({ max: 255 }),
      shift: fc.constantFrom(0, 1, 2, 3),
    });
    const counts = frameProperty(
      arb,
      RUNS.frameStructured,
      ({ base, overrides, drop, dtype, payload, fill, shift }) => {
        const header: Record<string, unknown> = { ...SAMPLES[base][0], ...overrides };
        if (drop !== null) delete header[drop];
        const declared = header.payloadValues;
        const bytesPer = dtype === 0 ? 4 : 2;
        const size =
          payload !== 'declared'
            ? payload
            : typeof declared === 'number' &&
                Number.isSafeInteger(declared) &&
                declared >= 0 &&
                declared <= 4096
              ? align4(declared * bytesPer)
              : 0;
        return { bytes: place(rawFrame(header, new Uint8Array(size).fill(fill), dtype), shift) };
      },
    );
    expect(counts.byReason.invalid_message).toBeGreaterThan(0);
  });

  it(`mutated valid frames (${RUNS.frameMutated} cases): flips, overwrites, truncations, extensions, splices, huge length fields`, () => {
    const arb = fc.record({
      base: fc.nat({ max: VALID_FRAMES.length - 1 }),
      mutations: fc.array(mutationArb(PREAMBLE), { minLength: 1, maxLength: 4 }),
      shift: fc.constantFrom(0, 0, 1, 2, 3),
      limit: oneIn(8, fc.integer({ min: -16, max: 16 })), // a maxFrameBytes near the frame's length
    });
    const counts = frameProperty(
      arb,
      RUNS.frameMutated,
      ({ base, mutations, shift, limit }) => {
        const bytes = mutate(VALID_FRAMES[base], mutations, FRAME_FIELDS, VALID_FRAMES);
        return {
          bytes: place(bytes, shift),
          max: limit === null ? undefined : Math.max(0, bytes.length + limit),
        };
      },
      ({ base, limit }, bytes, verdict) => {
        // A mutation that changed nothing (a byte overwritten with itself) must decode as the original did.
        if (limit === null && sameBytes(bytes, VALID_FRAMES[base])) {
          expect(verdict.ok && verdict.frame.message).toEqual(
            SAMPLES[Math.floor(base / WIRE_DTYPES.length)][0],
          );
        }
      },
    );
    // Mutations reach every check decodeFrame makes (non_finite is the roles' check, see the Channel test).
    for (const reason of REJECT_REASONS.filter((r) => r !== 'non_finite'))
      expect(counts.byReason[reason], reason).toBeGreaterThan(0);
  });

  it(`claimed sizes far beyond the bytes sent (${RUNS.frameHugeClaims} cases) are refused at once, without allocating them`, () => {
    const PAYLOAD_SAMPLES = SAMPLES.filter(([, n]) => n > 0).map(([m]) => m);
    // msgpack containers whose 32-bit length claims up to 4 GiB: array32, map32, str32, bin32, ext32.
    const CONTAINERS = [0xdd, 0xdf, 0xdb, 0xc6, 0xc9];
    const arb = fc.oneof(
      fc.record({
        kind: fc.constant('headerLength' as const),
        base: fc.nat({ max: VALID_FRAMES.length - 1 }),
        value: fc.oneof(
          fc.constantFrom(0x7fff_ffff, 0x8000_0000, 0xffff_ffff),
          fc.integer({ min: 1 << 16, max: 0xffff_ffff }),
        ),
      }),
      fc.record({
        kind: fc.constant('payloadValues' as const),
        base: fc.nat({ max: PAYLOAD_SAMPLES.length - 1 }),
        dtype: fc.integer({ min: 0, max: 2 }),
        value: fc.oneof(
          fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER),
          fc.integer({ min: 1 << 20, max: Number.MAX_SAFE_INTEGER }),
        ),
        words: fc.nat({ max: 16 }),
        shift: fc.constantFrom(0, 1), // an odd offset takes the copying path
      }),
      fc.record({
        kind: fc.constant('container' as const),
        code: fc.constantFrom(...CONTAINERS),
        value: fc.oneof(
          fc.constantFrom(0x7fff_ffff, 0xffff_ffff),
          fc.integer({ min: 1 << 16, max: 0xffff_ffff }),
        ),
        tail: fc.uint8Array({ maxLength: 16 }),
      }),
    );
    const expected = {
      headerLength: 'bad_header_length',
      payloadValues: 'wrong_payload_size',
      container: 'malformed_header',
    } as const;
    const before = liveBytes();
    const durations: number[] = [];
    const counts = new RejectionCounts();
    fc.assert(
      fc.property(arb, (c) => {
        let bytes: Uint8Array;
        if (c.kind === 'headerLength') {
          bytes = Uint8Array.from(VALID_FRAMES[c.base]);
          // ≥ 64 KiB: far past the end of any sample frame
          new DataView(bytes.buffer).setUint32(8, c.value, true);
        } else if (c.kind === 'payloadValues') {
          bytes = place(
            rawFrame(
              { ...PAYLOAD_SAMPLES[c.base], payloadValues: c.value },
              new Uint8Array(4 * c.words),
              c.dtype,
            ),
            c.shift,
          );
        } else {
          const claim = new Uint8Array(5);
          claim[0] = c.code;
          new DataView(claim.buffer).setUint32(1, c.value, false);
          // { type: 'heartbeat', sentAt: 1, x: <container claiming c.value entries or bytes> }
          const header = concat(
            Uint8Array.of(0x83),
            pack('type'),
            pack('heartbeat'),
            pack('sentAt'),
            pack(1),
            pack('x'),
            claim,
            c.tail,
          );
          bytes = rawFrameAround(header, new Uint8Array(0), 0);
        }
        const arrayBuffersBefore = process.memoryUsage().arrayBuffers;
        const started = performance.now();
        const verdict = judgeFrame(bytes, counts);
        durations.push(performance.now() - started);
        expect(verdict.ok ? 'accepted' : verdict.reason).toBe(expected[c.kind]);
        // Nothing the size of the claim was allocated (it would still be counted here: no GC ran in between).
        expect(process.memoryUsage().arrayBuffers - arrayBuffersBefore).toBeLessThan(16 * MB);
      }),
      { numRuns: RUNS.frameHugeClaims },
    );
    expect(counts.total).toBe(RUNS.frameHugeClaims);
    // A claim that is honoured would take seconds for every case; one GC pause can take 250 ms for one.
    durations.sort((a, b) => a - b);
    expect(durations[Math.floor(durations.length * 0.99)]).toBeLessThan(50);
    expect(durations.filter((d) => d > 250).length).toBeLessThanOrEqual(2);
    expect(liveBytes() - before).toBeLessThan(64 * MB);
  });

  it('a frame cut short inside the header padding is refused, whatever buffer holds it', () => {
    // Found by the mutation fuzzing above (truncation, exact-size buffer): decodeFrame threw a
    // RangeError from the typed-array constructor instead of refusing the frame.
    let cases = 0;
    for (const dtype of WIRE_DTYPES) {
      for (const reason of ['a', 'ab', 'abc', 'abcd']) {
        const frame = encodeFrame({ type: 'shutdown', reason }, undefined, { dtype });
        const headerEnd = PREAMBLE + new DataView(frame.buffer).getUint32(8, true);
        if (headerEnd % 4 === 0) continue; // no padding to cut into
        for (const shift of [0, 1, 2, 3]) {
          expect(frameVerdict(place(frame.slice(0, headerEnd), shift))).toEqual({
            ok: false,
            reason: 'misaligned_payload',
          });
          cases++;
        }
      }
    }
    expect(cases).toBe(3 * 3 * 4);
  });

  it('a 16-bit payload claiming 2^31 or more values is refused, however few bytes follow', () => {
    // Found by the made-up-header fuzzing: 2^31 values are 2^32 bytes, which a 32-bit "round up
    // to 4" turned into 0, so a frame with no payload passed the size check and the decoder went on
    // to allocate a Float32Array of 2^31 values (8 GiB), or threw a RangeError.
    for (const dtype of [1, 2]) {
      for (const payloadValues of [
        2 ** 31,
        2 ** 31 + 1,
        2 ** 31 + 2,
        2 ** 32,
        2 ** 33 + 1,
        Number.MAX_SAFE_INTEGER,
      ]) {
        for (const words of [0, 1]) {
          const frame = rawFrame(
            { type: 'weights', version: 1, payloadValues },
            new Uint8Array(4 * words),
            dtype,
          );
          for (const shift of [0, 1])
            expect(frameVerdict(place(frame, shift))).toEqual({ ok: false, reason: 'wrong_payload_size' });
        }
      }
    }
  });
});

/** An in-memory Link: what a transport does, minus the network. */
describe('Channel: every bad frame is one counted rejection, and no exception escapes', () => {
  // Valid frames, one with a NaN gradient (valid to the decoder, refused by the role's assertFinite).
  const nanFrame = encodeFrame(
    { type: 'weights', version: 1, payloadValues: 3 },
    Float32Array.of(1, Number.NaN, 2),
  );
  const bases = [...VALID_FRAMES, nanFrame];
  const input = fc.oneof(
    {
      weight: 2,
      arbitrary: fc.record({
        base: fc.nat({ max: bases.length - 1 }),
        mutations: fc.constant([] as Mutation[]),
        shift: fc.constantFrom(0, 1),
      }),
    },
    {
      weight: 5,
      arbitrary: fc.record({
        base: fc.nat({ max: bases.length - 1 }),
        mutations: fc.array(mutationArb(PREAMBLE), { minLength: 1, maxLength: 3 }),
        shift: fc.constantFrom(0, 1, 2, 3),
      }),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64, size: 'max' }).map((bytes) => ({ bytes })) },
  );

  it(`${RUNS.channel} sequences of valid, mutated and random frames through a Channel over an in-memory link`, () => {
    const log = pino({ level: 'silent' });
    fc.assert(
      fc.property(
        fc.array(input, { minLength: 1, maxLength: 6 }),
        oneIn(4, fc.integer({ min: 16, max: 4096 })),
        (inputs, limit) => {
          const link = new MemoryLink();
          const rejections = new RejectionCounts();
          const delivered: Frame[] = [];
          const maxFrameBytes = limit ?? undefined;
          new Channel(link, {
            log,
            rejections,
            maxFrameBytes,
            replyToRejections: true,
            accepts: [
              ...WORKER_MESSAGE_TYPES,
              ...COORDINATOR_MESSAGE_TYPES,
              ...SHARD_MESSAGE_TYPES,
              ...TO_SHARD_MESSAGE_TYPES,
            ],
            onMessage: (frame) => {
              assertFinite(frame.payload, 'payload'); // what the roles do with gradients and weights
              // must not escape either
              if (frame.message.type === 'shutdown') throw new Error('a handler bug');
              delivered.push(frame);
            },
            onClose: () => {},
          });
          for (const item of inputs) {
            const bytes =
              'bytes' in item
                ? item.bytes
                : place(mutate(bases[item.base], item.mutations, FRAME_FIELDS, bases), item.shift);
            const verdict = frameVerdict(bytes, maxFrameBytes);
            const expected = !verdict.ok
              ? verdict.reason
              : firstNonFinite(verdict.frame.payload) >= 0
                ? 'non_finite'
                : verdict.frame.message.type === 'shutdown'
                  ? 'internal'
                  : 'delivered';
            const [total, reasonCount, deliveredCount, sentCount] = [
              rejections.total,
              rejections.byReason[expected] ?? 0,
              delivered.length,
              link.sent.length,
            ];

            expect(() => link.receive(bytes)).not.toThrow();

            const rejected = expected !== 'delivered' && expected !== 'internal';
            expect(rejections.total).toBe(total + (rejected ? 1 : 0));
            if (rejected) expect(rejections.byReason[expected]).toBe(reasonCount + 1);
            expect(delivered.length).toBe(deliveredCount + (expected === 'delivered' ? 1 : 0));
            // The peer is told why, in a frame it can decode (and nothing is sent for a good frame).
            expect(link.sent.length).toBe(sentCount + (expected === 'delivered' ? 0 : 1));
            if (expected !== 'delivered')
              expect(decodeFrame(link.sent.at(-1)!).message).toMatchObject({ type: 'error', code: expected });
            if (expected === 'internal') tallies.channel.note('decoded, then the handler threw');
            if (expected === 'delivered' || expected === 'internal') tallies.channel.accept();
            else tallies.channel.reject(expected);
          }
          for (const reason of Object.keys(rejections.byReason)) expect(REJECT_REASONS).toContain(reason);
        },
      ),
      { numRuns: RUNS.channel },
    );
    expect(tallies.channel.rejected.byReason.non_finite).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Chunks: the Reassembler, and NatsLink's parsing of chunk and control headers.
// ---------------------------------------------------------------------------------------------

interface Piece {
  info: ChunkInfo;
  bytes: Uint8Array;
  /** Its number in the link's stream (Gf-Chunk) as first sent; a forged piece takes its place's. */
  n?: number;
}

type StreamEdit =
  | { kind: 'drop'; at: number }
  | { kind: 'duplicate'; at: number; to: number }
  | { kind: 'swap'; at: number }
  | { kind: 'flipByte'; at: number; pos: number; bit: number }
  | { kind: 'resize'; at: number; by: number }
  | { kind: 'info'; at: number; field: keyof ChunkInfo; value: number }
  | { kind: 'nudge'; at: number; field: keyof ChunkInfo; by: number }
  | { kind: 'garbage'; at: number; info: ChunkInfo; bytes: Uint8Array };

const INFO_FIELDS: (keyof ChunkInfo)[] = ['seq', 'part', 'parts', 'length', 'crc'];
/**
 * Values a chunk header can carry once NatsLink has parsed it (chunkInfoOf admits only safe
 * integers, so NaN and fractions are fuzzed through NatsLink below, not here), and some it cannot.
 */
const infoValue = fc.oneof(
  fc.constantFrom(-1, 0, 1, 2, 3, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER),
  fc.integer({ min: -5, max: 400 }),
  fc.nat(),
);
const streamEditArb: fc.Arbitrary<StreamEdit> = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), to: fc.nat() }),
  fc.record({ kind: fc.constant('swap' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flipByte' as const), at: fc.nat(), pos: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('resize' as const), at: fc.nat(), by: fc.integer({ min: -8, max: 8 }) }),
  fc.record({
    kind: fc.constant('info' as const),
    at: fc.nat(),
    field: fc.constantFrom(...INFO_FIELDS),
    value: infoValue,
  }),
  fc.record({
    kind: fc.constant('nudge' as const),
    at: fc.nat(),
    field: fc.constantFrom(...INFO_FIELDS),
    by: fc.constantFrom(-2, -1, 1, 2),
  }),
  fc.record({
    kind: fc.constant('garbage' as const),
    at: fc.nat(),
    info: fc.record({
      seq: fc.integer({ min: 0, max: 7 }),
      part: fc.integer({ min: 0, max: 5 }),
      parts: fc.integer({ min: 0, max: 6 }),
      length: infoValue,
      crc: fc.nat(),
    }),
    bytes: fc.uint8Array({ maxLength: 48, size: 'max' }),
  }),
);
const chunkStreamArb = fc.record({
  frames: fc.array(fc.uint8Array({ maxLength: 64, size: 'max' }), { minLength: 1, maxLength: 5 }),
  chunkBytes: fc.integer({ min: 1, max: 40 }),
  edits: fc.array(streamEditArb, { maxLength: 5 }),
  limit: fc.option(fc.integer({ min: 0, max: 200 }), { freq: 3 }),
});

/**
 * The chunks of `frames` (sequence numbers 1…), in order, with `edits` applied. `relabelled` is set
 * when a chunk's sequence number was changed: a whole frame sent under another number passes every
 * check (the CRC covers the bytes, not the number), so only "one of the frames sent" can be asked then.
 */
function chunkStream(
  frames: Uint8Array[],
  chunkBytes: number,
  edits: readonly StreamEdit[],
): { pieces: Piece[]; relabelled: boolean } {
  const pieces: Piece[] = frames
    .flatMap((f, i) => chunkFrame(i + 1, f, chunkBytes).map((c) => ({ info: { ...c.info }, bytes: c.bytes })))
    .map((p, i) => ({ ...p, n: i + 1 }));
  const crcs = new Set(frames.map((f) => crc32(f)));
  let relabelled = false;
  for (const e of edits) {
    const at = pieces.length === 0 ? 0 : e.at % pieces.length;
    const p = pieces[at];
    switch (e.kind) {
      case 'drop':
        pieces.splice(at, 1);
        break;
      case 'duplicate':
        if (p) pieces.splice(e.to % (pieces.length + 1), 0, p);
        break;
      case 'swap':
        if (at + 1 < pieces.length) [pieces[at], pieces[at + 1]] = [pieces[at + 1], pieces[at]];
        break;
      case 'flipByte':
        if (p && p.bytes.length > 0) {
          const bytes = Uint8Array.from(p.bytes);
          bytes[e.pos % bytes.length] ^= 1 << e.bit;
          pieces[at] = { ...p, bytes };
        }
        break;
      case 'resize':
        if (p)
          pieces[at] = {
            ...p,
            bytes:
              e.by < 0
                ? p.bytes.slice(0, Math.max(0, p.bytes.length + e.by))
                : concat(p.bytes, new Uint8Array(e.by).fill(0xa5)),
          };
        break;
      case 'info':
      case 'nudge':
        if (p) {
          const value = e.kind === 'info' ? e.value : p.info[e.field] + e.by;
          if (e.field === 'seq' && value !== p.info.seq) relabelled = true;
          pieces[at] = { ...p, info: { ...p.info, [e.field]: value } };
        }
        break;
      case 'garbage': {
        // Never self-consistent: a CRC that matches neither these bytes nor any frame sent.
        let crc = e.info.crc;
        while (crc === crc32(e.bytes) || crcs.has(crc)) crc = (crc + 1) >>> 0;
        pieces.splice(at, 0, { info: { ...e.info, crc }, bytes: e.bytes, n: at + 1 });
        break;
      }
    }
  }
  return { pieces, relabelled };
}

const REASSEMBLY_KINDS = ['frame', 'partial', 'duplicate', 'gap', 'corrupt'];

/** A Link-like NATS connection in memory: NatsLink subscribes, publishes and flushes through it. */
function memoryNats() {
  let callback: ((err: Error | null, msg: { headers?: MsgHdrs; data: Uint8Array }) => void) | undefined;
  const published: { subject: string; headers?: MsgHdrs }[] = [];
  const nc = {
    subscribe: (_subject: string, options: { callback: typeof callback }) => {
      callback = options.callback;
      return { unsubscribe: () => {} };
    },
    publish: (subject: string, _data: Uint8Array, options?: { headers?: MsgHdrs }) => {
      published.push({ subject, headers: options?.headers });
    },
    flush: () => Promise.resolve(),
  };
  return {
    nc: nc as unknown as NatsConnection,
    published,
    /** A message arrives on the link's subject. */
    deliver: (headers: MsgHdrs | undefined, data: Uint8Array) => callback!(null, { headers, data }),
  };
}

const H = {
  seq: 'Gf-Seq',
  part: 'Gf-Part',
  parts: 'Gf-Parts',
  length: 'Gf-Len',
  crc: 'Gf-Crc',
  chunk: 'Gf-Chunk',
  control: 'Gf-Ctl',
  ack: 'Gf-Ack',
  sack: 'Gf-Sack',
  reason: 'Gf-Reason',
} as const;
/** Header text a peer could write: numbers in odd spellings, non-numbers, nothing. */
const headerText = fc.oneof(
  fc.constantFrom(
    '',
    '-1',
    '0',
    '1',
    '1.5',
    '1e3',
    '0x10',
    ' 2 ',
    'NaN',
    'Infinity',
    '9007199254740993',
    '1099511627776',
    '4294967295',
  ),
  fc.string({ maxLength: 10 }).filter((s) => !/[\r\n]/.test(s)),
);
type HeaderEdit =
  | { kind: 'delete'; at: number; key: string }
  | { kind: 'set'; at: number; key: string; value: string }
  | { kind: 'control'; at: number; control: string; ack: string; sack: string; reply: boolean };
const headerEditArb: fc.Arbitrary<HeaderEdit> = fc.oneof(
  fc.record({
    kind: fc.constant('delete' as const),
    at: fc.nat(),
    key: fc.constantFrom(H.seq, H.part, H.parts, H.length, H.crc, H.chunk),
  }),
  fc.record({
    kind: fc.constant('set' as const),
    at: fc.nat(),
    key: fc.constantFrom(H.seq, H.part, H.parts, H.length, H.crc, H.chunk, H.control),
    value: headerText,
  }),
  fc.record({
    kind: fc.constant('control' as const),
    at: fc.nat(),
    control: fc.oneof(
      fc.constantFrom('ack', 'ping', 'resume', 'ref', 'want', 'fill'),
      headerText.filter((s) => s !== ''),
    ),
    ack: headerText,
    sack: fc.oneof(headerText, fc.constantFrom('1-2', '2-3,5-9', '3-1', '1-2,1-2', '0-4', '1-1,3-3,5-5')),
    reply: fc.boolean(),
  }),
);

describe('chunk reassembly: lost, repeated, reordered and corrupted chunks are never merged into a frame', () => {
  it(`${RUNS.reassembler} edited chunk streams straight into a Reassembler, then resent from where it asks`, () => {
    fc.assert(
      fc.property(chunkStreamArb, ({ frames, chunkBytes, edits, limit }) => {
        const { pieces, relabelled } = chunkStream(frames, chunkBytes, edits);
        // The worker's NatsLink gives no limit: the default must hold as well as an explicit one.
        const r = limit === null ? new Reassembler() : new Reassembler(0, limit);
        let delivered = 0;
        const feed = (p: Piece) => {
          const result = r.add(p.info, p.bytes);
          expect(REASSEMBLY_KINDS).toContain(result.kind);
          switch (result.kind) {
            case 'frame':
              expect(result.seq).toBe(delivered + 1);
              // Never a frame that was not sent; with the numbers untouched, exactly the one sent under that
              // number.
              if (relabelled) expect(frames.some((f) => sameBytes(f, result.bytes))).toBe(true);
              else expect(sameBytes(result.bytes, frames[result.seq - 1])).toBe(true);
              expect(result.bytes.byteOffset).toBe(0); // owned and aligned: a fresh buffer
              delivered = result.seq;
              tallies.reassembler.accept();
              tallies.reassembler.note('frames delivered');
              break;
            case 'partial':
              tallies.reassembler.accept();
              break;
            case 'gap':
            case 'corrupt':
              expect(result.expected).toBe(delivered + 1);
              tallies.reassembler.reject(result.kind);
              break;
            case 'duplicate':
              tallies.reassembler.reject(result.kind);
          }
          expect(r.delivered).toBe(delivered);
        };
        for (const p of pieces) feed(p);
        // Recovery: what a sender does on gap/corrupt (resend every frame from `expected`, in order)
        // completes the stream; a partial frame built from bad chunks may cost one more resend.
        if (frames.every((f) => limit === null || f.length <= limit)) {
          for (let round = 0; round < 2 && r.delivered < frames.length; round++) {
            for (let seq = r.expected; seq <= frames.length; seq++)
              for (const c of chunkFrame(seq, frames[seq - 1], chunkBytes)) feed(c);
          }
          if (relabelled)
            // a frame relabelled past the last one counts
            expect(r.delivered).toBeGreaterThanOrEqual(frames.length);
          else expect(r.delivered).toBe(frames.length);
        }
      }),
      { numRuns: RUNS.reassembler },
    );
  });

  it('a chunk claiming a huge frame is refused before anything that size is allocated, with or without a limit', () => {
    for (const length of [2 ** 31, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
      for (const r of [new Reassembler(), new Reassembler(0, 1 << 20)]) {
        const before = process.memoryUsage().arrayBuffers;
        expect(r.add({ seq: 1, part: 0, parts: 2, length, crc: 0 }, new Uint8Array(8)).kind).toBe('corrupt');
        expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(128 * MB);
      }
    }
  });

  it(`${RUNS.natsLink} edited chunk streams with mangled NATS headers through a NatsLink: no exception escapes, each drop is counted`, () => {
    fc.assert(
      fc.property(
        chunkStreamArb,
        fc.array(headerEditArb, { maxLength: 4 }),
        ({ frames, chunkBytes, edits, limit }, headerEdits) => {
          const { pieces, relabelled } = chunkStream(frames, chunkBytes, edits);
          const messages = pieces.map((p, i) => {
            const h: Record<string, string> = {
              [H.chunk]: String(p.n ?? i + 1),
              [H.seq]: String(p.info.seq),
              [H.part]: String(p.info.part),
              [H.parts]: String(p.info.parts),
              [H.length]: String(p.info.length),
              [H.crc]: String(p.info.crc),
            };
            return { h, data: p.bytes };
          });
          for (const e of headerEdits) {
            const at = messages.length === 0 ? 0 : e.at % messages.length;
            if (e.kind === 'control') {
              // A `ref` names a broadcast this link never saw (it has no broadcast subject): it must ask for
              // the frame, never deliver one. `want` and `fill` name chunks and parts by the same numbers.
              const ref =
                e.control === 'ref' || e.control === 'want' || e.control === 'fill'
                  ? {
                      [H.chunk]: e.ack,
                      [H.seq]: e.ack,
                      'Gf-Bid': 'fuzz',
                      'Gf-Bseq': e.ack,
                      [H.length]: e.ack,
                      [H.crc]: e.ack,
                      'Gf-Want': e.sack,
                    }
                  : {};
              messages.splice(at, 0, {
                h: {
                  [H.control]: e.control,
                  [H.ack]: e.ack,
                  [H.sack]: e.sack,
                  ...(e.reply ? { [H.reason]: 'reply' } : {}),
                  ...ref,
                },
                data: new Uint8Array(0),
              });
            } else if (messages[at]) {
              const h = { ...messages[at].h };
              if (e.kind === 'delete') delete h[e.key];
              else h[e.key] = e.value;
              messages[at] = { h, data: messages[at].data };
            }
          }
          const nats = memoryNats();
          const link = new NatsLink({
            nc: nats.nc,
            sendSubject: 'down',
            recvSubject: 'up',
            peer: 'fuzz',
            chunkBytes: 64,
            maxFrameBytes: limit ?? undefined,
          });
          const got: Uint8Array[] = [];
          const rejected: string[] = [];
          link.attach({
            frame: (b) => got.push(b),
            close: () => {},
            rejected: (reason) => rejected.push(reason),
          });
          try {
            for (const { h, data } of messages) {
              const headers = natsHeaders();
              for (const [k, v] of Object.entries(h)) headers.set(k, v);
              expect(() => nats.deliver(headers, data)).not.toThrow();
            }
            expect(() => nats.deliver(undefined, Uint8Array.of(1, 2, 3))).not.toThrow(); // no headers at all
          } finally {
            link.close('fuzz case done');
          }
          // Frames come out whole and in order; a header edit can only lose or relabel, never alter.
          const renumbered = relabelled || headerEdits.some((e) => e.kind === 'set' && e.key === H.seq);
          got.forEach((f, i) =>
            expect(renumbered ? frames.some((sent) => sameBytes(sent, f)) : sameBytes(f, frames[i])).toBe(
              true,
            ),
          );
          for (const reason of rejected) expect(TRANSPORT_REJECT_REASONS).toContain(reason);
          // Every ack and request names chunk numbers the peer can act on.
          for (const { headers } of nats.published) {
            const control = headers?.get(H.control);
            if (control === 'resume' || control === 'ack' || control === 'ping') {
              expect(headers!.get(H.ack)).toMatch(/^\d+$/);
              expect(headers!.get(H.sack)).toMatch(/^(\d+-\d+(,\d+-\d+)*)?$/);
            }
            if (control === 'want') expect(headers!.get(H.chunk)).toMatch(/^[1-9]\d*$/);
          }
          tallies.natsLink.tried += messages.length + 1;
          tallies.natsLink.accepted += messages.length + 1 - rejected.length;
          for (const reason of rejected) tallies.natsLink.rejected.record(reason);
          tallies.natsLink.note('frames delivered', got.length);
        },
      ),
      { numRuns: RUNS.natsLink },
    );
    expect(tallies.natsLink.rejected.byReason.malformed_chunk).toBeGreaterThan(0);
    expect(tallies.natsLink.rejected.byReason.corrupt_chunk).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Data files: IDX (and the MNIST loader on top of it), Kaggle CSV.
// ---------------------------------------------------------------------------------------------

/**
 * Deterministic bytes (fast-check picks the seed): far cheaper than generating every pixel through
 * fast-check.
 */
function seededBytes(seed: number, n: number, max = 256): Uint8Array {
  const rng = new Rng(seed);
  return Uint8Array.from({ length: n }, () => (rng.nextInt(4) === 0 ? 0 : rng.nextInt(max)));
}

/**
 * What parseIdx may throw: a DataError naming the source, with a non-empty problem. Anything else is
 * rethrown.
 */
function dataErrorReason(err: unknown, source: string | string[]): string {
  if (!(err instanceof DataError)) throw err;
  const sources = Array.isArray(source) ? source : [source];
  expect(sources.some((s) => err.source.startsWith(s))).toBe(true);
  expect(err.message).toBe(`${err.source}: ${err.problem}`);
  expect(err.problem.trim().length).toBeGreaterThan(0);
  return kindOf(err.problem);
}

const IDX_FIELDS: LengthField[] = [4, 8, 12, 16].map((at) => ({ at, littleEndian: false }));
const IDX_IMAGES = encodeIdx([2, 28, 28], seededBytes(1, 2 * 784));
const IDX_LABELS = encodeIdx([2], Uint8Array.of(3, 9));
const IDX_BASES: { bytes: Uint8Array; dims: number }[] = [
  { bytes: IDX_IMAGES, dims: 3 },
  { bytes: IDX_LABELS, dims: 1 },
  { bytes: encodeIdx([3, 5], seededBytes(2, 15)), dims: 2 },
  { bytes: encodeIdx([1, 2, 2, 2], seededBytes(3, 8)), dims: 4 },
];

/**
 * parseIdx on `bytes`: a tensor exactly as the header describes, from exactly the bytes after it, or a
 * DataError.
 */
function judgeIdx(bytes: Uint8Array, expectedDims: number | undefined): void {
  let tensor: ReturnType<typeof parseIdx>;
  try {
    tensor = parseIdx(bytes, 'fuzz.idx', expectedDims);
  } catch (err) {
    tallies.idx.reject(dataErrorReason(err, 'fuzz.idx'));
    return;
  }
  const { dims, data } = tensor;
  expect(dims.length).toBeGreaterThan(0);
  if (expectedDims !== undefined) expect(dims.length).toBe(expectedDims);
  expect(dims.every((d) => Number.isInteger(d) && d >= 1)).toBe(true);
  expect(data.length).toBe(dims.reduce((a, b) => a * b, 1));
  const header = 4 + 4 * dims.length;
  expect(data.length).toBe(bytes.length - header);
  expect(sameBytes(data, bytes.subarray(header))).toBe(true);
  tallies.idx.accept();
}

// Kaggle CSV: the layouts, and a reference reading of them to compare both readers with (the byte scanner
// for files without quotes, csv-parse for the rest).
const PIXEL_HEADER = Array.from({ length: 784 }, (_, i) => `pixel${i}`).join(',');
const TRAIN_HEADER = `label,${PIXEL_HEADER}`;

/**
 * RFC 4180 records, the slow, obvious way: fields end at commas and records at LF or CRLF, outside double
 * quotes; `""` in a quoted field is one quote. A quote inside an unquoted field, text after a closing quote
 * or an unclosed quote: null. `raw` is the record's text without its line end, `start` its offset.
 */
function referenceRecords(text: string): { fields: string[]; raw: string; start: number }[] | null {
  const records: { fields: string[]; raw: string; start: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let fieldStart = true;
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (fieldStart && c === '"') {
      for (i++; ; ) {
        if (i >= text.length) return null;
        if (text[i] === '"' && text[i + 1] === '"') {
          field += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else {
          field += text[i++];
        }
      }
      if (i < text.length && text[i] !== ',' && text[i] !== '\n' && !text.startsWith('\r\n', i)) return null;
      fieldStart = false;
    } else if (c === ',') {
      fields.push(field);
      field = '';
      fieldStart = true;
      i++;
    } else if (c === '\n' || text.startsWith('\r\n', i)) {
      fields.push(field);
      records.push({ fields, raw: text.slice(start, i), start });
      i += c === '\n' ? 1 : 2;
      start = i;
      fields = [];
      field = '';
      fieldStart = true;
    } else if (c === '"') {
      return null;
    } else {
      field += c;
      fieldStart = false;
      i++;
    }
  }
  if (start < text.length) {
    fields.push(field);
    records.push({ fields, raw: text.slice(start), start });
  }
  return records;
}

/**
 * What a Kaggle CSV means, read the slow, obvious way: both readers must agree with it. The header may have
 * an unnamed index column before Kaggle's names (whose values are then ignored), values are whole numbers,
 * optionally written as floats with a zero fraction.
 */
function referenceCsv(
  bytes: Uint8Array,
): { labelled: boolean; labels: number[]; pixels: number[] } | 'refused' {
  let text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  if (text.startsWith('\xef\xbb\xbf')) text = text.slice(3);
  if (text.endsWith('\r')) text = text.slice(0, -1); // a CR that ends the file ends its last line
  const records = referenceRecords(text);
  if (records === null || records.length === 0) return 'refused';
  const names = records[0].fields;
  const indexed = names.length > 1 && names[0] === '';
  // the line's CR went with its line end; one more is tolerated (layoutOf's)
  const header = (indexed ? names.slice(1) : names).join(',').replace(/\r$/, '');
  if (header !== TRAIN_HEADER && header !== PIXEL_HEADER) return 'refused';
  const labelled = header === TRAIN_HEADER;
  const labels: number[] = [];
  const pixels: number[] = [];
  let rows = 0;
  for (let i = 1; i < records.length; i++) {
    const { fields, raw, start } = records[i];
    if (raw === '') {
      if (/^[\r\n]*$/.test(text.slice(start))) break; // trailing blank lines
      return 'refused';
    }
    const values = fields.slice(indexed ? 1 : 0);
    if (values.length !== (labelled ? 785 : 784) || !values.every((f) => /^[0-9]+(\.0*)?$/.test(f)))
      return 'refused';
    const numbers = values.map((f) => Number.parseInt(f, 10));
    if (labelled) {
      const label = numbers.shift()!;
      if (label > 9) return 'refused';
      labels.push(label);
    }
    if (numbers.some((v) => v > 255)) return 'refused';
    pixels.push(...numbers);
    rows++;
  }
  return rows === 0 ? 'refused' : { labelled, labels, pixels };
}

/** How a tool wrote the file: pandas' QUOTE_ALL, its index column, float pixels (`12.0`). */
interface CsvStyle {
  quoteAll?: boolean;
  index?: boolean;
  floats?: boolean;
}

function csvText(
  labelled: boolean,
  rows: number,
  seed: number,
  eol: string,
  finalEol: boolean,
  bom: boolean,
  style: CsvStyle = {},
): Uint8Array {
  const rng = new Rng(seed);
  // pandas' index column: no name in the header, 0, 1, 2... in the rows
  const line = (fields: string[], index: string) =>
    (style.index ? [index, ...fields] : fields).map((f) => (style.quoteAll ? `"${f}"` : f)).join(',');
  const lines = [line((labelled ? TRAIN_HEADER : PIXEL_HEADER).split(','), '')];
  for (let r = 0; r < rows; r++) {
    const pixels = Array.from({ length: 784 }, () => {
      const v = rng.nextInt(3) === 0 ? rng.nextInt(256) : 0;
      return style.floats ? `${v}.0` : String(v);
    });
    lines.push(line(labelled ? [String(rng.nextInt(10)), ...pixels] : pixels, String(r)));
  }
  return Buffer.from((bom ? '\xef\xbb\xbf' : '') + lines.join(eol) + (finalEol ? eol : ''), 'latin1');
}

const CSV_BASES = [
  csvText(true, 2, 1, '\n', true, false),
  csvText(true, 3, 2, '\r\n', false, false),
  csvText(false, 2, 3, '\n', false, true),
  csvText(false, 1, 4, '\r\n', true, false),
  csvText(true, 2, 5, '\n', true, false, { quoteAll: true, index: true, floats: true }),
  csvText(false, 2, 6, '\r\n', false, false, { index: true }),
  csvText(true, 2, 7, '\n', true, true, { floats: true }),
  csvText(false, 1, 8, '\n', true, false, { quoteAll: true }),
];
const CSV_CHARS = [',', '\n', '\r', '0', '1', '9', '-', ' ', 'x', '.', '"', '\0', '\xff', '\xef'];
const CSV_INSERTS = [
  ',',
  '\n',
  '\r\n',
  '256',
  '10',
  '-1',
  '\n\n',
  ',0',
  '0,',
  '\r',
  `${'0'.repeat(40)}7`,
  '\n\r\n',
  '"',
  '""',
  '.0',
  '.5',
  ',"7"',
];
type CsvEdit =
  | { kind: 'set'; at: number; inData: boolean; char: string }
  | { kind: 'insert'; at: number; inData: boolean; text: string }
  | { kind: 'remove'; at: number; inData: boolean; count: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'appendRow' }
  | { kind: 'appendBlank'; text: string };
const csvEditArb: fc.Arbitrary<CsvEdit> = fc.oneof(
  fc.record({
    kind: fc.constant('set' as const),
    at: fc.nat(),
    inData: fc.boolean(),
    char: fc.constantFrom(...CSV_CHARS),
  }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    inData: fc.boolean(),
    text: fc.constantFrom(...CSV_INSERTS),
  }),
  fc.record({
    kind: fc.constant('remove' as const),
    at: fc.nat(),
    inData: fc.boolean(),
    count: fc.integer({ min: 1, max: 6 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('appendRow' as const) }),
  fc.record({ kind: fc.constant('appendBlank' as const), text: fc.constantFrom('\n', '\r\n', '\n\n', '\r') }),
);

/** Edits mostly land in the data rows (`inData`): the 7 KB header would otherwise take nearly all of them. */
function editCsv(base: Uint8Array, edits: readonly CsvEdit[]): Uint8Array {
  let text = Buffer.from(base).toString('latin1');
  for (const e of edits) {
    const dataStart = text.indexOf('\n') + 1 || text.length;
    const pos = (at: number, inData: boolean) =>
      inData && dataStart < text.length
        ? dataStart + (at % (text.length - dataStart))
        : at % (text.length + 1);
    switch (e.kind) {
      case 'set': {
        const p = pos(e.at, e.inData);
        if (p < text.length) text = text.slice(0, p) + e.char + text.slice(p + 1);
        break;
      }
      case 'insert': {
        const p = pos(e.at, e.inData);
        text = text.slice(0, p) + e.text + text.slice(p);
        break;
      }
      case 'remove': {
        const p = pos(e.at, e.inData);
        text = text.slice(0, p) + text.slice(p + e.count);
        break;
      }
      case 'truncate':
        text = text.slice(0, e.at % (text.length + 1));
        break;
      case 'appendRow': {
        const firstRow = text.slice(dataStart).split('\n')[0];
        text += (text.endsWith('\n') ? '' : '\n') + firstRow;
        break;
      }
      case 'appendBlank':
        text += e.text;
        break;
    }
  }
  return Buffer.from(text, 'latin1');
}

/**
 * parseKaggleCsv on `bytes`, with the reader it picks and with csv-parse forced: the same rows the reference
 * reads, or a DataError where the reference refuses too, with the same message from both readers.
 */
function judgeCsv(bytes: Uint8Array): void {
  const reference = referenceCsv(bytes);
  const read = (reader: 'auto' | 'csv-parse') => {
    try {
      return parseKaggleCsv(bytes, 'fuzz.csv', { reader });
    } catch (err) {
      dataErrorReason(err, 'fuzz.csv'); // rethrows anything but a DataError naming the file
      return err as DataError;
    }
  };
  const data = read('auto');
  // With a quote in it, 'auto' has read the file with csv-parse already.
  const viaCsvParse = bytes.includes(0x22) ? data : read('csv-parse');
  if (data instanceof DataError) {
    tallies.csv.reject(kindOf(data.problem));
    expect(viaCsvParse).toBeInstanceOf(DataError);
    expect((viaCsvParse as DataError).message).toBe(data.message);
    expect(reference).toBe('refused');
    return;
  }
  expect(viaCsvParse).not.toBeInstanceOf(DataError);
  expect(fingerprint(viaCsvParse as typeof data)).toBe(fingerprint(data));
  expect(reference).not.toBe('refused');
  if (reference === 'refused') return;
  expect(data.count).toBeGreaterThan(0);
  expect(data.images.length).toBe(data.count * 784);
  expect(Array.from(data.images)).toEqual(reference.pixels);
  if (reference.labelled) {
    expect(data.labels).not.toBeNull();
    expect(data.labels!.length).toBe(data.count);
    expect(data.labels!.every((l) => l <= 9)).toBe(true);
    expect(Array.from(data.labels!)).toEqual(reference.labels);
  } else {
    expect(data.labels).toBeNull();
  }
  tallies.csv.accept();
}

describe('data files: IDX and Kaggle CSV parse to a consistent data set or fail with a clear DataError', () => {
  it(`IDX: random bytes (${RUNS.idxRandom} cases), half of them behind a plausible magic`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64, size: 'max' }),
        fc.boolean(),
        fc.option(fc.integer({ min: 0, max: 5 })),
        (body, magic, expectedDims) => {
          const bytes = magic ? concat(Uint8Array.of(0, 0, 8, body.length % 5), body) : body;
          judgeIdx(bytes, expectedDims ?? undefined);
        },
      ),
      { numRuns: RUNS.idxRandom },
    );
  });

  it(`IDX: mutated valid files (${RUNS.idxMutated} cases): dims, magic, truncation, trailing bytes`, () => {
    const donors = IDX_BASES.map((b) => b.bytes);
    // Counted here, not from the file-wide tally that earlier tests have already filled.
    const acceptedBefore = tallies.idx.accepted;
    fc.assert(
      fc.property(
        fc.nat({ max: IDX_BASES.length - 1 }),
        fc.array(mutationArb(20), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        fc.constantFrom(0, 1, 3),
        (base, mutations, strict, shift) => {
          const bytes = place(mutate(IDX_BASES[base].bytes, mutations, IDX_FIELDS, donors), shift);
          judgeIdx(bytes, strict ? IDX_BASES[base].dims : undefined);
        },
      ),
      { numRuns: RUNS.idxMutated },
    );
    expect(tallies.idx.accepted - acceptedBefore).toBeGreaterThan(0);
  });

  it(`MNIST loader (${RUNS.mnistFiles} pairs of files, raw or gzipped): counts match, labels 0–9, or a DataError naming the file`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-fuzz-'));
    try {
      const imagesPath = join(dir, 'images-idx3-ubyte');
      const labelsPath = join(dir, 'labels-idx1-ubyte');
      const labelValues = fc.constantFrom(0, 9, 10, 255);
      fc.assert(
        fc.property(
          fc.array(mutationArb(16), { maxLength: 3 }),
          fc.array(mutationArb(8), { maxLength: 2 }),
          labelValues,
          fc.boolean(),
          fc.boolean(),
          (imageEdits, labelEdits, label, gzipImages, corruptGzip) => {
            const labels = mutate(IDX_LABELS, labelEdits, IDX_FIELDS, [IDX_LABELS]);
            // the second label; out of range it must be caught by the loader
            if (labels.length > 9) labels[9] = label;
            let images = mutate(IDX_IMAGES, imageEdits, IDX_FIELDS, [IDX_IMAGES]);
            if (gzipImages) {
              images = Uint8Array.from(gzipSync(images));
              if (corruptGzip) images[images.length - 5] ^= 0x40; // inside the CRC-32 / size trailer
            }
            writeFileSync(imagesPath, images);
            writeFileSync(labelsPath, labels);
            let data: ReturnType<typeof loadMnistFiles>;
            try {
              data = loadMnistFiles(imagesPath, labelsPath);
            } catch (err) {
              tallies.mnist.reject(dataErrorReason(err, [imagesPath, labelsPath]));
              return;
            }
            expect(data.images.length).toBe(data.count * 784);
            expect(data.labels!.length).toBe(data.count);
            expect(data.labels!.every((l) => l <= 9)).toBe(true);
            if (imageEdits.length === 0 && labelEdits.length === 0)
              expect(Array.from(data.labels!)).toEqual([3, label]);
            tallies.mnist.accept();
          },
        ),
        { numRuns: RUNS.mnistFiles },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(tallies.mnist.accepted).toBeGreaterThan(0);
    expect(tallies.mnist.rejected.total).toBeGreaterThan(0);
  });

  it(`Kaggle CSV: mutated valid files (${RUNS.csvMutated} cases) read exactly as a reference reading says, or fail clearly`, () => {
    fc.assert(
      fc.property(
        fc.nat({ max: CSV_BASES.length - 1 }),
        fc.array(csvEditArb, { maxLength: 4 }),
        (base, edits) => judgeCsv(editCsv(CSV_BASES[base], edits)),
      ),
      { numRuns: RUNS.csvMutated },
    );
    expect(tallies.csv.accepted).toBeGreaterThan(0);
    expect(tallies.csv.rejected.total).toBeGreaterThan(0);
  });

  it(`Kaggle CSV: random bytes (${RUNS.csvRandom} cases), alone or after a valid header`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 256, size: 'max' }),
        fc.constantFrom('', `${TRAIN_HEADER}\n`, `${PIXEL_HEADER}\r\n`),
        (body, header) => {
          judgeCsv(concat(Buffer.from(header, 'latin1'), body));
        },
      ),
      { numRuns: RUNS.csvRandom },
    );
  });

  it('Kaggle CSV: a file of blank lines is refused without allocating 784 bytes per line', () => {
    // 6 million line feeds (6 MB) once made the parser size its pixel array by line count (4.7 GB)
    // and throw a RangeError from the Uint8Array constructor.
    const bytes = concat(Buffer.from(`${TRAIN_HEADER}\n`, 'latin1'), new Uint8Array(6_000_000).fill(0x0a));
    const before = process.memoryUsage().arrayBuffers;
    expect(() => parseKaggleCsv(bytes, 'blank.csv')).toThrow(/blank\.csv: no data rows after the header/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * MB);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Checkpoints: any change to an encoded checkpoint is caught, never decoded to something else.
// ---------------------------------------------------------------------------------------------

const CHECKPOINT_DECODE_ERRORS = [
  'bad_magic',
  'unsupported_version',
  'truncated',
  'trailing_bytes',
  'bad_header',
  'bad_tensor_table',
  'checksum_mismatch',
];
const CHECKPOINT_FIELDS: LengthField[] = [{ at: 8, littleEndian: true }];
const CHECKPOINT_META = {
  runId: 'fuzz',
  step: 42,
  epoch: 1,
  lr: 1e-3,
  history: [0.5, 0.25],
  note: 'ü ✓',
  nested: { a: null, b: [true, false] },
};
const CHECKPOINT_TENSORS = {
  'conv1/kernel': payloadOf(12),
  'conv1/bias': Float32Array.of(-0, 1.5, Number.MIN_VALUE),
  empty: new Float32Array(0),
};
const CHECKPOINT = encodeCheckpoint(CHECKPOINT_META, CHECKPOINT_TENSORS);

/**
 * decodeCheckpoint's answer; a thrown CheckpointError gives its code, anything else is a crash and is
 * rethrown.
 */
function checkpointVerdict(bytes: Uint8Array): ReturnType<typeof decodeCheckpoint> | string {
  try {
    return decodeCheckpoint(bytes);
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    expect(CHECKPOINT_DECODE_ERRORS).toContain(err.code);
    expect(err.message.length).toBeGreaterThan(0);
    tallies.checkpoint.reject(err.code);
    return err.code;
  }
}

/** JSON with keys sorted at every level, as the checkpoint's hash covers it. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** A checkpoint file around any header text and payload (as a damaged or hand-made file could be). */
function rawCheckpoint(header: string, payload: Uint8Array): Uint8Array {
  const h = Buffer.from(header, 'utf8');
  const payloadAt = Math.ceil((12 + h.length) / 8) * 8;
  const out = new Uint8Array(payloadAt + payload.length);
  out.set(Buffer.from('GFCK'), 0);
  out[4] = 1;
  new DataView(out.buffer).setUint32(8, h.length, true);
  out.set(h, 12);
  out.set(payload, payloadAt);
  return out;
}

/**
 * meta: an ordinary JSON value, or nesting thousands deep (a stack-depth problem for recursive code;
 * described, not built, so a counterexample prints short).
 */
const metaArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ value: fc.jsonValue({ maxDepth: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ depth: fc.integer({ min: 1, max: 12_000 }), arrays: fc.boolean() }) },
);

/** meta's JSON text, and its canonical form (keys sorted) as the checkpoint's hash covers it. */
function metaText(meta: { value: unknown } | { depth: number; arrays: boolean }): {
  text: string;
  canonical: string;
} {
  if ('value' in meta) return { text: JSON.stringify(meta.value), canonical: canonicalJson(meta.value) };
  const { depth, arrays } = meta;
  const text = arrays
    ? '['.repeat(depth) + ']'.repeat(depth)
    : `${'{"a":'.repeat(depth)}0${'}'.repeat(depth)}`;
  return { text, canonical: text }; // one key per level: already canonical
}
const tableNumber = fc.oneof(
  fc.nat({ max: 20 }).map((n) => 4 * n),
  fc.nat({ max: 80 }),
  fc.constantFrom(-4, 0.5, 2 ** 53, 1e300),
);
const structuredCheckpointArb = fc.record({
  meta: metaArb,
  tensors: fc.array(
    fc.record({
      name: fc.oneof(fc.constantFrom('w', 'b', '__proto__', ''), fc.string({ maxLength: 4 })),
      offset: tableNumber,
      length: fc.nat({ max: 16 }),
    }),
    { maxLength: 4 },
  ),
  payload: fc.uint8Array({ maxLength: 64, size: 'max' }).map((b) => b.subarray(0, b.length & ~3)),
  payloadBytes: oneIn(4, tableNumber), // null: the real payload size
  sha: fc.constantFrom('correct', 'correct', 'zeros', 'uppercase'),
  layout: fc.constantFrom('canonical', 'canonical', 'canonical', 'spaced', 'reordered'),
});

describe('checkpoint decoder: a changed byte is always caught', () => {
  it(`mutated checkpoints (${RUNS.checkpointMutated} cases) decode to the original only when no byte changed`, () => {
    fc.assert(
      fc.property(
        fc.array(mutationArb(12), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(0, 1, 4),
        (mutations, shift) => {
          const bytes = mutate(CHECKPOINT, mutations, CHECKPOINT_FIELDS, [CHECKPOINT]);
          const verdict = checkpointVerdict(place(bytes, shift));
          if (sameBytes(bytes, CHECKPOINT)) {
            // Unchanged bytes (a byte overwritten with itself): the original, bit for bit.
            expect(typeof verdict).toBe('object');
            if (typeof verdict === 'object') {
              expect(verdict.meta).toEqual(CHECKPOINT_META);
              for (const [name, tensor] of Object.entries(CHECKPOINT_TENSORS))
                expect(bytesOf(verdict.tensors[name])).toEqual(bytesOf(tensor));
            }
            tallies.checkpoint.accept();
          } else {
            // Never a silent wrong result: any other bytes are refused.
            expect(typeof verdict).toBe('string');
          }
        },
      ),
      { numRuns: RUNS.checkpointMutated },
    );
    expect(tallies.checkpoint.rejected.byReason.checksum_mismatch).toBeGreaterThan(0);
  });

  it(`random bytes (${RUNS.checkpointRandom} cases), alone or behind a valid preamble`, () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 128, size: 'max' }), fc.boolean(), (body, preamble) => {
        const bytes = preamble
          ? concat(Uint8Array.of(0x47, 0x46, 0x43, 0x4b, 1, 0, 0, 0, body.length & 0xff, 0, 0, 0), body)
          : body;
        expect(typeof checkpointVerdict(bytes)).toBe('string');
      }),
      { numRuns: RUNS.checkpointRandom },
    );
  });

  it(`made-up headers (${RUNS.checkpointStructured} cases): tables out of range or overlapping, wrong sizes, deep nesting; accepted exactly when self-consistent`, () => {
    // Counted in this test alone: the file-wide tally already holds earlier tests' cases.
    const seen = { consistent: 0, accepted: 0, badTable: 0, deep: 0 };
    fc.assert(
      fc.property(
        structuredCheckpointArb,
        ({ meta: metaCase, tensors, payload, payloadBytes, sha, layout: form }) => {
          const meta = metaText(metaCase);
          const size = payloadBytes ?? payload.length;
          const tableText = JSON.stringify(tensors);
          const canonical = `{"meta":${meta.canonical},"payloadBytes":${JSON.stringify(size)},"tensors":${canonicalJson(tensors)}}`;
          const hash =
            sha === 'zeros'
              ? '0'.repeat(64)
              : createHash('sha256').update(canonical, 'utf8').update(payload).digest('hex');
          const hashText = sha === 'uppercase' ? hash.toUpperCase() : hash;
          const header =
            form === 'reordered'
              ? `{"tensors":${tableText},"meta":${meta.text},"payloadBytes":${JSON.stringify(size)},"sha256":"${hashText}"}`
              : `{"meta":${meta.text},"tensors":${tableText},"payloadBytes":${JSON.stringify(size)},"sha256":"${hashText}"}`;
          const verdict = checkpointVerdict(
            rawCheckpoint(form === 'spaced' ? header.replace(',', ', ') : header, payload),
          );
          if (verdict === 'bad_tensor_table') seen.badTable++;
          // What the file format (coordinator/checkpoint-file.ts's header comment) allows, judged from the
          // case itself.
          const consistent = selfConsistent({
            tensors,
            size,
            payloadLength: payload.length,
            sha,
            spaced: form === 'spaced',
          });
          // JSON nested thousands deep may exceed the stack (refused as bad_header) or not: either is right.
          const deep = 'depth' in metaCase && metaCase.depth > 500;
          if (consistent) seen.consistent++;
          if (consistent && deep) seen.deep++;
          if (consistent && !deep)
            expect(typeof verdict, `a self-consistent file was refused: ${String(verdict)}`).toBe('object');
          if (typeof verdict === 'string') return;
          seen.accepted++;
          expect(consistent, 'an inconsistent file was accepted').toBe(true);
          expect(Object.keys(verdict.tensors).sort()).toEqual(tensors.map((t) => t.name).sort());
          for (const t of tensors) {
            expect(verdict.tensors[t.name].length).toBe(t.length);
            expect(bytesOf(verdict.tensors[t.name])).toEqual(
              payload.subarray(t.offset, t.offset + 4 * t.length),
            );
          }
          tallies.checkpoint.accept();
        },
      ),
      { numRuns: RUNS.checkpointStructured },
    );
    console.log(`made-up checkpoint headers: ${JSON.stringify(seen)}`);
    expect(seen.accepted).toBeGreaterThan(0);
    expect(seen.consistent - seen.deep).toBeGreaterThan(0);
    expect(seen.badTable).toBeGreaterThan(0);
  });
});

/**
 * A made-up checkpoint is valid when its hash is right and in lowercase, its header is exactly what
 * JSON.stringify writes (no added spaces; any key order), payloadBytes is the payload's size, and its
 * tensor table names each tensor once, at a 4-aligned whole-number offset, inside the payload, with
 * no two non-empty tensors sharing a byte.
 */
function selfConsistent(c: {
  tensors: { name: string; offset: number; length: number }[];
  size: number;
  payloadLength: number;
  sha: string;
  spaced: boolean;
}): boolean {
  if (c.sha !== 'correct' || c.spaced || c.size !== c.payloadLength) return false;
  const whole = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (new Set(c.tensors.map((t) => t.name)).size !== c.tensors.length) return false;
  if (
    !c.tensors.every(
      (t) => whole(t.offset) && whole(t.length) && t.offset % 4 === 0 && t.offset + 4 * t.length <= c.size,
    )
  )
    return false;
  const used = new Set<number>();
  for (const t of c.tensors) {
    for (let b = t.offset; b < t.offset + 4 * t.length; b++) {
      if (used.has(b)) return false;
      used.add(b);
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// 5. A data set streamed to a worker: bad chunks are refused, never merged into a corrupt set.
// ---------------------------------------------------------------------------------------------

type ReceiverEdit =
  | { kind: 'drop' | 'duplicate' | 'nullLabels' | 'addLabels'; at: number }
  | { kind: 'first' | 'count' | 'total'; at: number; by: number }
  | { kind: 'images' | 'labels'; at: number; by: number }
  | { kind: 'pixel' | 'label'; at: number; pos: number; value: number };
const receiverEditArb: fc.Arbitrary<ReceiverEdit> = fc.oneof(
  fc.record({
    kind: fc.constantFrom('drop' as const, 'duplicate' as const, 'nullLabels' as const, 'addLabels' as const),
    at: fc.nat(),
  }),
  fc.record({
    kind: fc.constantFrom('first' as const, 'count' as const, 'total' as const),
    at: fc.nat(),
    by: fc.integer({ min: -3, max: 3 }).filter((n) => n !== 0),
  }),
  fc.record({
    kind: fc.constantFrom('images' as const, 'labels' as const),
    at: fc.nat(),
    by: fc.integer({ min: -2, max: 2 }).filter((n) => n !== 0),
  }),
  fc.record({
    kind: fc.constantFrom('pixel' as const, 'label' as const),
    at: fc.nat(),
    pos: fc.nat(),
    value: fc.nat({ max: 255 }),
  }),
);

describe('streamed data sets: out-of-range, overlapping and altered chunks never make a corrupt data set', () => {
  it(`${RUNS.receiver} chunk streams, in any order, with edits, into a DatasetReceiver`, () => {
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.nat(),
          total: fc.integer({ min: 1, max: 12 }),
          labelled: fc.boolean(),
          cuts: fc.array(fc.nat(), { maxLength: 5 }),
          order: fc.nat(),
        }),
        fc.array(receiverEditArb, { maxLength: 3 }),
        ({ seed, total, labelled, cuts, order }, edits) => {
          const images = seededBytes(seed, total * 784);
          const labels = labelled ? seededBytes(seed + 1, total, 10) : null;
          const expected = fingerprint(createDataset('sent', images, labels));
          // Split [0, total) at the cuts, and send the chunks in a shuffled order (any order is fine).
          const bounds = [...new Set([0, total, ...cuts.map((c) => c % total)])].sort((a, b) => a - b);
          let chunks: MessageOf<'dataChunk'>[] = bounds.slice(0, -1).map((first, i) => {
            const count = bounds[i + 1] - first;
            return {
              type: 'dataChunk',
              split: 'train',
              first,
              count,
              total,
              images: images.slice(first * 784, (first + count) * 784),
              labels: labels === null ? null : labels.slice(first, first + count),
            };
          });
          const rng = new Rng(order);
          for (let i = chunks.length - 1; i > 0; i--) {
            const j = rng.nextInt(i + 1);
            [chunks[i], chunks[j]] = [chunks[j], chunks[i]];
          }
          for (const e of edits) {
            const at = e.at % chunks.length;
            const c = chunks[at];
            if (!c) continue;
            let edited: MessageOf<'dataChunk'> | undefined = { ...c };
            switch (e.kind) {
              case 'drop':
                edited = undefined;
                break;
              case 'duplicate':
                chunks.push({ ...c });
                break;
              case 'nullLabels':
                edited.labels = null;
                break;
              case 'addLabels':
                edited.labels = new Uint8Array(Math.max(0, c.count)).fill(1);
                break;
              case 'first':
              case 'count':
              case 'total':
                edited[e.kind] += e.by;
                break;
              case 'images':
                edited.images =
                  e.by < 0 ? c.images.slice(0, e.by * 784) : concat(c.images, new Uint8Array(784 * e.by));
                break;
              case 'labels':
                if (c.labels)
                  edited.labels = e.by < 0 ? c.labels.slice(0, e.by) : concat(c.labels, new Uint8Array(e.by));
                break;
              case 'pixel':
                edited.images = Uint8Array.from(c.images);
                edited.images[e.pos % c.images.length] ^= 1 + (e.value % 255);
                break;
              case 'label':
                if (c.labels) {
                  edited.labels = Uint8Array.from(c.labels);
                  edited.labels[e.pos % c.labels.length] ^= 1 + (e.value % 255);
                }
                break;
            }
            chunks = edited
              ? chunks.map((x, i) => (i === at ? edited! : x))
              : chunks.filter((_, i) => i !== at);
          }

          const receiver = new DatasetReceiver('train', total, expected, MNIST_SHAPE);
          let results = 0;
          for (const chunk of chunks) {
            // The worker only ever sees chunks that passed the message schema.
            if (!dataChunkSchema.safeParse(chunk).success) {
              tallies.receiver.reject('not a valid dataChunk message');
              continue;
            }
            let result: ReturnType<DatasetReceiver['add']>;
            try {
              result = receiver.add(chunk);
            } catch (err) {
              // A plain Error naming the split, never a TypeError/RangeError from inside.
              expect(err).toBeInstanceOf(Error);
              expect((err as Error).constructor).toBe(Error);
              expect((err as Error).message).toMatch(/train/);
              tallies.receiver.reject(kindOf((err as Error).message, false));
              continue;
            }
            tallies.receiver.accept();
            if (!result) continue;
            // Complete: exactly the data set that was sent, once.
            results++;
            expect(fingerprint(result)).toBe(expected);
            expect(sameBytes(result.images, images)).toBe(true);
            if (labels) expect(sameBytes(result.labels!, labels)).toBe(true);
            else expect(result.labels).toBeNull();
          }
          expect(results).toBeLessThanOrEqual(1);
          if (edits.length === 0) expect(results).toBe(1);
        },
      ),
      { numRuns: RUNS.receiver },
    );
  });
});
