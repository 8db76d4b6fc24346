import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
import { ProtocolError, type RejectReason } from '../../protocol/errors.js';
import type { Message } from '../../protocol/messages.js';
import {
  type WireDtype,
  WIRE_DTYPES,
  bf16ToF32,
  bytesPerValue,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  fromBf16Bits,
  fromF16Bits,
  parseWireDtype,
  toBf16Bits,
  toF16Bits,
  wireDtypeCode,
  wireDtypeFromCode,
} from '../../protocol/wire-dtype.js';

const isF16NaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;

/** binary16 value by the textbook formula, independent of the codec's table. */
function f16Reference(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * 2 ** (exp - 15) * (1 + mant / 1024);
}

function rejection(bytes: Uint8Array): RejectReason | 'accepted' {
  try {
    decodeFrame(bytes);
    return 'accepted';
  } catch (err) {
    if (err instanceof ProtocolError) return err.reason;
    throw err; // anything but a ProtocolError is a crash
  }
}

/** Deterministic normals (Box–Muller over an LCG). */
function normals(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 1) / 2 ** 32;
  };
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

describe('dtype names and codes', () => {
  it('codes 0/1/2, sizes, CLI spellings', () => {
    expect(WIRE_DTYPES.map(wireDtypeCode)).toEqual([0, 1, 2]);
    expect([0, 1, 2, 3, 255].map(wireDtypeFromCode)).toEqual(['f32', 'f16', 'bf16', undefined, undefined]);
    expect(WIRE_DTYPES.map(bytesPerValue)).toEqual([4, 2, 2]);
    expect(['fp16', 'bf16', 'fp32', 'F16'].map(parseWireDtype)).toEqual(['f16', 'bf16', 'f32', 'f16']);
    expect(() => parseWireDtype('fp8')).toThrow(/unknown wire dtype/);
  });
});

describe('f32 → f16 (round to nearest even)', () => {
  it.each<[string, number, number]>([
    ['1', 1, 0x3c00],
    ['-2', -2, 0xc000],
    ['+0', 0, 0x0000],
    ['-0', -0, 0x8000],
    ['65504 (max)', 65504, 0x7bff],
    ['65519 rounds down to max', 65519, 0x7bff],
    ['65520 ties to even: Inf', 65520, 0x7c00],
    ['-65520', -65520, 0xfc00],
    ['1e6 overflows', 1e6, 0x7c00],
    ['+Inf', Infinity, 0x7c00],
    ['-Inf', -Infinity, 0xfc00],
    ['2^-14 (smallest normal)', 2 ** -14, 0x0400],
    ['2^-14 - 2^-25 ties up to the smallest normal', 2 ** -14 - 2 ** -25, 0x0400],
    ['largest subnormal', 1023 * 2 ** -24, 0x03ff],
    ['2^-24 (smallest subnormal)', 2 ** -24, 0x0001],
    ['-2^-24', -(2 ** -24), 0x8001],
    ['2^-25 ties to even: 0', 2 ** -25, 0x0000],
    ['-2^-25 ties to even: -0', -(2 ** -25), 0x8000],
    ['2^-25 + 2^-35 rounds up', 2 ** -25 + 2 ** -35, 0x0001],
    ['3·2^-25 ties to even: 2·2^-24', 3 * 2 ** -25, 0x0002],
    ['1e-40 (f32 subnormal) flushes', 1e-40, 0x0000],
    ['1 + 2^-11 ties to even: 1', 1 + 2 ** -11, 0x3c00],
    ['1 + 3·2^-11 ties to even: 1 + 2^-9', 1 + 3 * 2 ** -11, 0x3c02],
    ['1 + 2^-11 + 2^-20 rounds up', 1 + 2 ** -11 + 2 ** -20, 0x3c01],
    ['32760 ties up, carrying into the exponent', 32760, 0x7800],
    ['0.1', 0.1, 0x2e66],
  ])('%s', (_, x, bits) => {
    expect(toF16Bits(x)).toBe(bits);
  });

  it('NaN stays NaN, sign kept, even with only low payload bits', () => {
    const src = new Float32Array(
      Uint32Array.of(0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff).buffer,
    );
    const out = f32ToF16(src, new Uint16Array(src.length));
    for (const h of out) expect(isF16NaN(h)).toBe(true);
    expect([...out].map((h) => h >>> 15)).toEqual([0, 1, 0, 1, 0]);
    expect(Number.isNaN(fromF16Bits(toF16Bits(NaN)))).toBe(true);
  });

  it('picks the nearest f16 (ties to even) for random values across the whole range', () => {
    const src = normals(20_000, 7).map((g, i) => g * 2 ** ((i % 50) - 30));
    const out = f32ToF16(src, new Uint16Array(src.length));
    for (let i = 0; i < src.length; i++) {
      const x = Math.abs(src[i]);
      const h = out[i] & 0x7fff;
      const err = Math.abs(f16Reference(h) - x);
      const up = h < 0x7c00 ? Math.abs(f16Reference(h + 1) - x) : Infinity;
      const down = h > 0 ? Math.abs(f16Reference(h - 1) - x) : Infinity;
      if (h === 0x7c00) {
        expect(x).toBeGreaterThanOrEqual(65520);
        continue;
      }
      expect(err).toBeLessThanOrEqual(up);
      expect(err).toBeLessThanOrEqual(down);
      if (err === up || err === down) expect(h & 1).toBe(0);
      expect(out[i] >>> 15).toBe(src[i] < 0 || Object.is(src[i], -0) ? 1 : 0);
    }
  });

  it('max relative error ≤ 4.9e-4 in the normal range', () => {
    const src = normals(200_000, 1).map((g, i) => g * 2 ** ((i % 26) - 12));
    const back = f16ToF32(f32ToF16(src, new Uint16Array(src.length)), new Float32Array(src.length));
    let max = 0;
    let counted = 0;
    for (let i = 0; i < src.length; i++) {
      const x = Math.abs(src[i]);
      if (x < 2 ** -14 || x > 65504) continue;
      counted++;
      max = Math.max(max, Math.abs(back[i] - src[i]) / x);
    }
    expect(counted).toBeGreaterThan(150_000);
    expect(max).toBeLessThanOrEqual(4.9e-4);
    expect(max).toBeGreaterThan(4e-4); // the bound is tight (2^-11), so the check really measures
  });
});

describe('f16 → f32 (table)', () => {
  it('matches the textbook formula for all 65536 patterns, and re-encodes to the same bits', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const wide = f16ToF32(all, new Float32Array(65536));
    const again = f32ToF16(wide, new Uint16Array(65536));
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const ok = isF16NaN(h)
        ? Number.isNaN(wide[h]) && isF16NaN(again[h])
        : Object.is(wide[h], f16Reference(h)) && again[h] === h;
      if (!ok) wrong.push(h);
    }
    expect(wrong).toEqual([]);
    expect(fromF16Bits(0x0001)).toBe(2 ** -24);
    expect(fromF16Bits(0x7bff)).toBe(65504);
    expect(Object.is(fromF16Bits(0x8000), -0)).toBe(true);
  });
});

describe('f32 ↔ bf16', () => {
  it.each<[string, number, number]>([
    ['1', 1, 0x3f80],
    ['-2', -2, 0xc000],
    ['+0', 0, 0x0000],
    ['-0', -0, 0x8000],
    ['+Inf', Infinity, 0x7f80],
    ['-Inf', -Infinity, 0xff80],
    ['1 + 2^-8 ties to even: 1', 1 + 2 ** -8, 0x3f80],
    ['1 + 3·2^-8 ties to even: 1 + 2^-6', 1 + 3 * 2 ** -8, 0x3f82],
    ['1 + 2^-8 + 2^-20 rounds up', 1 + 2 ** -8 + 2 ** -20, 0x3f81],
    ['f32 max rounds to Inf', 3.4028234663852886e38, 0x7f80],
    ['65520 stays finite', 65520, 0x4780],
    ['f32 smallest subnormal ties to even: 0', 2 ** -149, 0x0000],
    ['2^-126', 2 ** -126, 0x0080],
  ])('%s', (_, x, bits) => {
    expect(toBf16Bits(x)).toBe(bits);
  });

  it('NaN stays NaN, even with only low payload bits', () => {
    const src = new Float32Array(Uint32Array.of(0x7fc00000, 0xff800001, 0x7f80ffff, 0x7fffffff).buffer);
    const out = f32ToBf16(src, new Uint16Array(src.length));
    for (const b of out) expect(isBf16NaN(b)).toBe(true);
    expect(Number.isNaN(fromBf16Bits(toBf16Bits(NaN)))).toBe(true);
  });

  it('widens all 65536 patterns exactly and re-encodes to the same bits', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const wide = bf16ToF32(all, new Float32Array(65536));
    const bits = new Uint32Array(wide.buffer);
    const again = f32ToBf16(wide, new Uint16Array(65536));
    const wrong: number[] = [];
    for (let b = 0; b < 65536; b++) {
      const ok = bits[b] === (b << 16) >>> 0 && (isBf16NaN(b) ? isBf16NaN(again[b]) : again[b] === b);
      if (!ok) wrong.push(b);
    }
    expect(wrong).toEqual([]);
  });

  it('max relative error ≤ 3.9e-3 over random normals at many scales', () => {
    const src = normals(200_000, 2).map((g, i) => g * 2 ** ((i % 200) - 100));
    const back = bf16ToF32(f32ToBf16(src, new Uint16Array(src.length)), new Float32Array(src.length));
    let max = 0;
    for (let i = 0; i < src.length; i++)
      if (src[i] !== 0) max = Math.max(max, Math.abs(back[i] - src[i]) / Math.abs(src[i]));
    expect(max).toBeLessThanOrEqual(3.9e-3);
    expect(max).toBeGreaterThan(3e-3);
  });
});

describe('array conversion contract', () => {
  it("writes into the caller's arrays (a prefix when longer) and refuses short ones", () => {
    const src = Float32Array.of(1, -2, 0.5);
    const half = new Uint16Array(5).fill(0xabcd);
    expect(f32ToF16(src, half)).toBe(half);
    expect([...half]).toEqual([0x3c00, 0xc000, 0x3800, 0xabcd, 0xabcd]);
    const wide = new Float32Array(3);
    expect(f16ToF32(half.subarray(0, 3), wide)).toBe(wide);
    expect([...wide]).toEqual([1, -2, 0.5]);
    expect(() => f32ToF16(src, new Uint16Array(2))).toThrow(RangeError);
    expect(() => bf16ToF32(new Uint16Array(3), new Float32Array(2))).toThrow(RangeError);
  });

  it('reads subarray views at their offset', () => {
    const big = Float32Array.of(9, 1, 2, 9);
    const out = f32ToBf16(big.subarray(1, 3), new Uint16Array(2));
    expect([...out]).toEqual([0x3f80, 0x4000]);
  });
});

describe('reduced-precision payloads (byte 5: 0 f32, 1 f16, 2 bf16)', () => {
  // Values exact in f16 and bf16 (8 significant bits, within f16's range), so every dtype round-trips
  // exactly.
  const exact = (n: number) => Float32Array.from({ length: n }, (_, i) => (i % 2 ? -1 : 1) * (i + 1) * 0.125);
  const weights = (n: number): Message => ({ type: 'weights', version: 2, payloadValues: n });
  const headerEnd = (bytes: Uint8Array) =>
    (12 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true) + 3) & ~3;

  const cases = WIRE_DTYPES.flatMap((dtype) =>
    [0, 1, 2, 3, 4, 7].map((n) => [dtype, n] as [WireDtype, number]),
  );
  it.each(cases)('%s with %i values round-trips, padded to 4 bytes with zeros', (dtype, n) => {
    const payload = exact(n);
    const bytes = encodeFrame(weights(n), payload, { dtype });
    expect(bytes[5]).toBe(WIRE_DTYPES.indexOf(dtype));
    const size = dtype === 'f32' ? 4 : 2;
    const at = headerEnd(bytes);
    expect(bytes.length - at).toBe((n * size + 3) & ~3);
    expect([...bytes.subarray(at + n * size)].every((b) => b === 0)).toBe(true);
    const frame = decodeFrame(bytes);
    expect(frame.dtype).toBe(dtype);
    expect(frame.message).toEqual(weights(n));
    expect(frame.payload).toBeInstanceOf(Float32Array);
    expect(frame.payload).toEqual(payload);
    if (dtype !== 'f32') expect(frame.payload.buffer).not.toBe(bytes.buffer); // a widened copy
  });

  it('f32 (the default) writes byte 5 = 0 and is unchanged: the same bytes as an explicit f32 frame', () => {
    const payload = Float32Array.of(0.1, -3e-20, 7);
    const bytes = encodeFrame(weights(3), payload);
    expect(bytes[5]).toBe(0);
    expect(bytes).toEqual(encodeFrame(weights(3), payload, { dtype: 'f32' }));
    expect(bytes.length).toBe(headerEnd(bytes) + 12);
    expect(decodeFrame(bytes).dtype).toBe('f32');
  });

  it('rounds to the dtype: 1 + 2^-11 ties to 1 in f16, 0.1 loses bits, 70000 overflows f16 but not bf16', () => {
    const payload = Float32Array.of(1 + 2 ** -11, 0.1, 70000);
    const f16 = decodeFrame(encodeFrame(weights(3), payload, { dtype: 'f16' })).payload;
    const bf16 = decodeFrame(encodeFrame(weights(3), payload, { dtype: 'bf16' })).payload;
    expect([...f16]).toEqual([1, 0.0999755859375, Infinity]);
    expect([...bf16]).toEqual([1, 0.10009765625, 70144]);
  });

  it('decodes a 16-bit payload from a transport buffer at an odd offset', () => {
    const bytes = encodeFrame(weights(3), exact(3), { dtype: 'f16' });
    const shifted = new Uint8Array(bytes.length + 1).subarray(1);
    shifted.set(bytes);
    expect(decodeFrame(shifted).payload).toEqual(exact(3));
  });

  it('refuses to encode a mismatched payload or an unknown dtype', () => {
    expect(() => encodeFrame(weights(4), new Float32Array(3), { dtype: 'f16' })).toThrow(
      /declares 4 payload values, got 3/,
    );
    expect(() => encodeFrame(weights(1), new Float32Array(1), { dtype: 'fp8' as WireDtype })).toThrow(
      /unknown_dtype/,
    );
  });

  const f16Odd = encodeFrame(weights(3), exact(3), { dtype: 'f16' });
  const f16Even = encodeFrame(weights(4), exact(4), { dtype: 'bf16' });
  const f32 = encodeFrame(weights(4), exact(4));
  const mutate = (frame: Uint8Array, f: (b: Uint8Array) => void) => {
    const b = frame.slice();
    f(b);
    return b;
  };

  it.each<[string, Uint8Array, RejectReason]>([
    ['dtype code 3', mutate(f16Odd, (b) => (b[5] = 3)), 'unknown_dtype'],
    ['dtype code 255 on an f32 frame', mutate(f32, (b) => (b[5] = 255)), 'unknown_dtype'],
    ['an f32 frame relabelled f16 (twice the bytes)', mutate(f32, (b) => (b[5] = 1)), 'wrong_payload_size'],
    [
      'an f16 frame relabelled f32 (half the bytes)',
      mutate(f16Even, (b) => (b[5] = 0)),
      'wrong_payload_size',
    ],
    [
      'nonzero padding after an odd count',
      mutate(f16Odd, (b) => (b[b.length - 1] = 1)),
      'wrong_payload_size',
    ],
    ['odd count without its padding', f16Odd.slice(0, f16Odd.length - 2), 'misaligned_payload'],
    ['16-bit payload one value short', f16Even.slice(0, f16Even.length - 4), 'wrong_payload_size'],
    ['16-bit payload with 4 extra zero bytes', Uint8Array.of(...f16Even, 0, 0, 0, 0), 'wrong_payload_size'],
  ])('%s', (_, bytes, reason) => {
    expect(rejection(bytes)).toBe(reason);
  });

  it('every dtype byte other than 0, 1, 2 is unknown_dtype', () => {
    for (let code = 3; code < 256; code++)
      expect(rejection(mutate(f32, (b) => (b[5] = code)))).toBe('unknown_dtype');
  });
});
