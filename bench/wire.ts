/**
 * The wire benchmark: bytes and encode/decode time of one weights frame per payload dtype, and the
 * precision each reduced dtype loses. Encode is encodeFrame (header, rounding into the frame);
 * decode is decodeFrame (validation, then a view for f32 or a widened float32 copy for f16/bf16).
 */
import { decodeFrame, encodeFrame } from '../protocol/codec.js';
import { WIRE_DTYPES, type WireDtype } from '../protocol/wire-dtype.js';
import { Rng } from '../training/rng.js';
import { median } from './median.js';

export interface WireBenchmark {
  dtype: WireDtype;
  /** The whole frame: preamble, header, padding, payload. */
  bytes: number;
  encode_ms: number;
  decode_ms: number;
  /**
   * max |decoded − sent| / |sent| over values with |sent| ≥ 2^-14 (fp16's normal range; below it
   * fp16 keeps absolute, not relative, precision, down to 2^-24). 0 for f32.
   */
  max_rel_error: number;
}

const SMALLEST_F16_NORMAL = 2 ** -14;

/** `values` defaults to mnist-large's parameter count (3,488,874). Values are N(0, 1). */
export function benchmarkWire(values = 3_488_874, reps = 5): WireBenchmark[] {
  const rng = new Rng(20240611);
  const payload = Float32Array.from({ length: values }, () => rng.nextGaussian());
  const message = { type: 'weights', version: 0, payloadValues: values } as const;
  return WIRE_DTYPES.map((dtype) => {
    const encodeMs: number[] = [];
    const decodeMs: number[] = [];
    let frame = encodeFrame(message, payload, { dtype }); // warm-up (and the f16 table)
    let decoded = decodeFrame(frame).payload;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      frame = encodeFrame(message, payload, { dtype });
      const t1 = performance.now();
      decoded = decodeFrame(frame).payload;
      const t2 = performance.now();
      encodeMs.push(t1 - t0);
      decodeMs.push(t2 - t1);
    }
    let maxRel = 0;
    for (let i = 0; i < values; i++) {
      const x = Math.abs(payload[i]);
      if (x >= SMALLEST_F16_NORMAL) {
        const rel = Math.abs(decoded[i] - payload[i]) / x;
        if (rel > maxRel) maxRel = rel;
      }
    }
    return {
      dtype,
      bytes: frame.length,
      encode_ms: median(encodeMs),
      decode_ms: median(decodeMs),
      max_rel_error: maxRel,
    };
  });
}
