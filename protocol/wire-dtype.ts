/**
 * Reduced-precision wire formats for tensor payloads (`--wire fp16|bf16`): the frame's payload may
 * carry IEEE binary16 or bfloat16 instead of float32, halving the bytes on the wire. Training
 * always computes in float32; these converters run once per frame on each side.
 *
 * All converters are pure TypeScript, read float bits through a Uint32Array view of the same
 * memory (no DataView), and write into caller-provided arrays.
 *
 *   f32 → f16   round to nearest, ties to even; results below 2^-14 become subnormals, below
 *               2^-25 zero; |x| ≥ 65520 becomes ±Inf; NaN stays NaN (quiet, sign kept).
 *   f16 → f32   exact, through a 64K-entry table of float32 bit patterns built on first use.
 *   f32 → bf16  round to nearest, ties to even (the top 16 bits of the float32); NaN stays NaN.
 *   bf16 → f32  exact: a 16-bit shift.
 *
 * Caveat for gradients: fp16's smallest normal is 2^-14 ≈ 6.1e-5 and its smallest subnormal
 * 2^-24 ≈ 6e-8, so small gradients lose relative precision or flush to zero; bf16 keeps float32's
 * exponent range (with 8 significant bits).
 */

export const WIRE_DTYPES = ['f32', 'f16', 'bf16'] as const;
export type WireDtype = (typeof WIRE_DTYPES)[number];

/** The payload dtype code in byte 5 of the frame preamble. */
const CODES: Record<WireDtype, number> = { f32: 0, f16: 1, bf16: 2 };

export function wireDtypeCode(dtype: WireDtype): number {
  return CODES[dtype];
}

/** The dtype for a preamble code, or undefined when the code is unknown. */
export function wireDtypeFromCode(code: number): WireDtype | undefined {
  return WIRE_DTYPES[code];
}

/** Bytes of one value on the wire. */
export function bytesPerValue(dtype: WireDtype): 2 | 4 {
  return dtype === 'f32' ? 4 : 2;
}

/** Parse a command-line spelling: f32|fp32|float32, f16|fp16|float16|half, bf16|bfloat16. */
export function parseWireDtype(text: string): WireDtype {
  switch (text.toLowerCase()) {
    case 'f32':
    case 'fp32':
    case 'float32':
      return 'f32';
    case 'f16':
    case 'fp16':
    case 'float16':
    case 'half':
      return 'f16';
    case 'bf16':
    case 'bfloat16':
      return 'bf16';
    default:
      throw new Error(`unknown wire dtype "${text}" (expected fp32, fp16 or bf16)`);
  }
}

function checkLengths(what: string, src: ArrayLike<number>, dst: ArrayLike<number>): void {
  if (dst.length < src.length)
    throw new RangeError(`${what}: destination holds ${dst.length} values, source has ${src.length}`);
}

/** float32 bits of `src` without copying (a Float32Array's byteOffset is always a multiple of 4). */
const bitsOf = (src: Float32Array) => new Uint32Array(src.buffer, src.byteOffset, src.length);

const TWO_POW_24 = 16777216;
// adding and removing it rounds a double in [0, 2^52) to an integer, ties to even
const TWO_POW_52 = 4503599627370496;

function f16Kernel(bits: Uint32Array, floats: Float32Array, dst: Uint16Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    const a = x & 0x7fffffff;
    let h: number;
    if (a < 0x47800000) {
      // |x| < 2^16: finite in f16 after rounding, or exactly at the overflow to Inf
      if (a >= 0x38800000) {
        // Normal: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits to nearest
        // even; a carry out of the mantissa bumps the exponent, up to 0x7c00 (Inf) for ≥ 65520.
        h = (a - 0x37fff001 + ((a >>> 13) & 1)) >>> 13;
      } else {
        // Subnormal or zero: the f16 value is |x|·2^24 rounded to an integer (exact in double).
        h = Math.abs(floats[i]) * TWO_POW_24 + TWO_POW_52 - TWO_POW_52;
      }
    } else {
      h = a > 0x7f800000 ? 0x7e00 | ((a >>> 13) & 0x3ff) : 0x7c00; // NaN (kept quiet) or Inf
    }
    dst[i] = h | ((x >>> 16) & 0x8000);
  }
}

function bf16Kernel(bits: Uint32Array, dst: Uint16Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    dst[i] =
      (x & 0x7fffffff) > 0x7f800000
        ? (x >>> 16) | 0x40 // NaN: set the quiet bit so truncated payload bits cannot make it Inf
        : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}

let f16Table: Uint32Array | undefined;

/** float32 bit patterns of all 65536 binary16 values. */
function f16ToF32Table(): Uint32Array {
  if (f16Table) return f16Table;
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    let mant = h & 0x3ff;
    let bits: number;
    if (exp === 0x1f)
      bits = 0x7f800000 | (mant << 13); // Inf, NaN with its payload
    else if (exp !== 0) bits = ((exp + 112) << 23) | (mant << 13);
    else if (mant === 0) bits = 0;
    else {
      // subnormal: mant·2^-24, normalised
      let e = 113;
      while ((mant & 0x400) === 0) {
        mant <<= 1;
        e--;
      }
      bits = (e << 23) | ((mant & 0x3ff) << 13);
    }
    table[h] = (sign | bits) >>> 0;
  }
  f16Table = table;
  return table;
}

/** Round `src` to binary16 into `dst` (RNE). */
export function f32ToF16(src: Float32Array, dst: Uint16Array): Uint16Array {
  checkLengths('f32ToF16', src, dst);
  f16Kernel(bitsOf(src), src, dst, src.length);
  return dst;
}

/** Widen binary16 `src` into `dst` (exact). */
export function f16ToF32(src: Uint16Array, dst: Float32Array): Float32Array {
  checkLengths('f16ToF32', src, dst);
  const table = f16ToF32Table();
  const out = bitsOf(dst);
  for (let i = 0, n = src.length; i < n; i++) out[i] = table[src[i]];
  return dst;
}

/** Round `src` to bfloat16 into `dst` (RNE). */
export function f32ToBf16(src: Float32Array, dst: Uint16Array): Uint16Array {
  checkLengths('f32ToBf16', src, dst);
  bf16Kernel(bitsOf(src), dst, src.length);
  return dst;
}

/** Widen bfloat16 `src` into `dst` (exact). */
export function bf16ToF32(src: Uint16Array, dst: Float32Array): Float32Array {
  checkLengths('bf16ToF32', src, dst);
  const out = bitsOf(dst);
  for (let i = 0, n = src.length; i < n; i++) out[i] = src[i] << 16;
  return dst;
}

/** Round `src` to a 16-bit wire dtype into `dst`. */
export function encodeHalf(dtype: 'f16' | 'bf16', src: Float32Array, dst: Uint16Array): Uint16Array {
  return dtype === 'f16' ? f32ToF16(src, dst) : f32ToBf16(src, dst);
}

/** Widen a 16-bit wire dtype into `dst`. */
export function decodeHalf(dtype: 'f16' | 'bf16', src: Uint16Array, dst: Float32Array): Float32Array {
  return dtype === 'f16' ? f16ToF32(src, dst) : bf16ToF32(src, dst);
}

// Scalar forms (tests, logging): one shared scratch value, no allocation per call.
const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);
const scratchHalf = new Uint16Array(1);

/** The binary16 bit pattern of `x` rounded to float32 first (as a Float32Array payload would be). */
export function toF16Bits(x: number): number {
  scratchFloat[0] = x;
  f16Kernel(scratchBits, scratchFloat, scratchHalf, 1);
  return scratchHalf[0];
}

export function fromF16Bits(h: number): number {
  scratchBits[0] = f16ToF32Table()[h & 0xffff];
  return scratchFloat[0];
}

/** The bfloat16 bit pattern of `x` rounded to float32 first. */
export function toBf16Bits(x: number): number {
  scratchFloat[0] = x;
  bf16Kernel(scratchBits, scratchHalf, 1);
  return scratchHalf[0];
}

export function fromBf16Bits(b: number): number {
  scratchBits[0] = (b & 0xffff) << 16;
  return scratchFloat[0];
}
