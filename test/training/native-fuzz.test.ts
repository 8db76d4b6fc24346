/**
 * Odd shapes through public tfjs ops on the native backend, values and gradients against cpu:
 * each case either agrees or fails on both backends (tfjs's own shape checks) with an error, and
 * the process never crashes. Bad calls straight to the addon are JS exceptions, never stray writes.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { type NativeAddon, loadNativeAddon } from '../../training/kernels/native/addon.js';
import type { WasmBackend } from '../../training/kernels/wasm-backend.js';
import {
  type TestBackend,
  maxAbsDiff,
  norm,
  randomArray,
  relativeError,
  useBackend,
} from '../helpers/backends.js';

type Outcome = { ok: true; values: Float32Array[] } | { ok: false; error: string };

/** The op's value and its gradients with respect to every input, as plain arrays (or its error). */
async function outcome(
  backend: TestBackend,
  shapes: number[][],
  op: (...xs: tf.Tensor[]) => tf.Tensor,
): Promise<Outcome> {
  await useBackend(backend);
  try {
    return {
      ok: true,
      values: tf.tidy(() => {
        const xs = shapes.map((s, i) =>
          tf.tensor(
            randomArray(
              s.reduce((a, b) => a * b, 1),
              100 + i,
            ),
            s,
          ),
        );
        const { value, grads } = tf.valueAndGrads((...args: tf.Tensor[]) =>
          tf.sum(tf.mul(op(...args), op(...args).add(1))),
        )(xs);
        return [op(...xs), value, ...grads].map((t) => t.dataSync() as Float32Array);
      }),
    };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

function expectSameOutcome(actual: Outcome, expected: Outcome): void {
  if (!expected.ok) {
    expect(actual.ok, `cpu failed (${expected.error}) but native did not`).toBe(false);
    return;
  }
  if (!actual.ok) throw new Error(`native failed where cpu did not: ${actual.error}`);
  actual.values.forEach((a, i) => {
    const e = expected.values[i];
    expect(a.length).toBe(e.length);
    const err = norm(e) < 1e-3 ? maxAbsDiff(a, e) : relativeError(a, e);
    expect(err).toBeLessThan(1e-4);
  });
}

const check = async (shapes: number[][], op: (...xs: tf.Tensor[]) => tf.Tensor) =>
  expectSameOutcome(await outcome('native', shapes, op), await outcome('cpu', shapes, op));

beforeAll(async () => {
  await useBackend('cpu');
  await useBackend('native');
});

describe('native backend on odd shapes', () => {
  it('conv2d (any stride, dilation, padding, kernel up to 5×5, bias and ReLU)', async () => {
    const conv = fc.record({
      n: fc.integer({ min: 1, max: 3 }),
      h: fc.integer({ min: 1, max: 9 }),
      w: fc.integer({ min: 1, max: 9 }),
      ci: fc.integer({ min: 1, max: 4 }),
      co: fc.integer({ min: 1, max: 4 }),
      k: fc.integer({ min: 1, max: 5 }),
      stride: fc.integer({ min: 1, max: 3 }),
      dilation: fc.integer({ min: 1, max: 2 }),
      pad: fc.constantFrom('same' as const, 'valid' as const),
      fused: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(conv, async ({ n, h, w, ci, co, k, stride, dilation, pad, fused }) => {
        const shapes = [[n, h, w, ci], [k, k, ci, co], [co]];
        await check(shapes, (x, f, b) =>
          fused
            ? tf.fused.conv2d({
                x: x as tf.Tensor4D,
                filter: f as tf.Tensor4D,
                bias: b,
                strides: stride,
                pad,
                dilations: dilation,
                activation: 'relu',
              })
            : tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, stride, pad, 'NHWC', dilation),
        );
      }),
      { numRuns: 40, seed: 16 },
    );
  }, 60_000);

  it('matMul (transposes, batch broadcast, vectors-as-matrices)', async () => {
    const mm = fc.record({
      batchA: fc.constantFrom(1, 2),
      batchB: fc.constantFrom(1, 2),
      m: fc.integer({ min: 1, max: 7 }),
      k: fc.integer({ min: 1, max: 9 }),
      n: fc.integer({ min: 1, max: 7 }),
      ta: fc.boolean(),
      tb: fc.boolean(),
      bias: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(mm, async ({ batchA, batchB, m, k, n, ta, tb, bias }) => {
        const shapes = [[batchA, ta ? k : m, ta ? m : k], [batchB, tb ? n : k, tb ? k : n], [n]];
        await check(shapes, (a, b, c) =>
          tf.fused.matMul({
            a,
            b,
            transposeA: ta,
            transposeB: tb,
            bias: bias ? c : undefined,
            activation: bias ? 'relu' : 'linear',
          }),
        );
      }),
      { numRuns: 40, seed: 16 },
    );
  }, 60_000);

  it('maxPool (windows larger than the input, overlapping, strided)', async () => {
    const pool = fc.record({
      n: fc.integer({ min: 1, max: 2 }),
      h: fc.integer({ min: 1, max: 8 }),
      w: fc.integer({ min: 1, max: 8 }),
      c: fc.integer({ min: 1, max: 5 }),
      size: fc.integer({ min: 1, max: 4 }),
      stride: fc.integer({ min: 1, max: 3 }),
      pad: fc.constantFrom('same' as const, 'valid' as const),
    });
    await fc.assert(
      fc.asyncProperty(pool, async ({ n, h, w, c, size, stride, pad }) => {
        await check([[n, h, w, c]], (x) => tf.maxPool(x as tf.Tensor4D, size, stride, pad));
      }),
      { numRuns: 40, seed: 16 },
    );
  }, 60_000);
});

describe('the addon refuses bad calls with exceptions', () => {
  let addon: NativeAddon;
  let heap: ArrayBuffer;
  beforeAll(async () => {
    await useBackend('native');
    addon = loadNativeAddon().addon!;
    heap = (tf.backend() as WasmBackend).wasm.HEAPU8.buffer as ArrayBuffer;
  });
  const shape = [1, 4, 4, 1, 3, 3, 1, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1];

  it('tensors outside the heap, misaligned or negative offsets', () => {
    expect(() => addon.convForward(heap, [heap.byteLength - 8, 0, -1, 0], shape, false)).toThrow(RangeError);
    expect(() => addon.convForward(heap, [2, 0, -1, 64], shape, false)).toThrow(/do not fit/);
    expect(() => addon.matMul(heap, [-8, 0, -1, 0], [1, 1, 2, 2, 2], [0, 0, 0])).toThrow(RangeError);
  });

  it('wrong argument shapes and types', () => {
    expect(() => addon.convForward(heap, [0, 0, -1, 0], [1, 2, 3], false)).toThrow(
      /expected 17 numbers, got 3/,
    );
    expect(() =>
      addon.matMul(new Uint8Array(8) as unknown as ArrayBuffer, [0, 0, -1, 0], [1, 1, 1, 1, 1], [0, 0, 0]),
    ).toThrow(TypeError);
    expect(() => addon.matMul(heap, [0, 0, -1, 0], [2, 3, 1, 1, 1], [0, 0, 0])).toThrow(/do not broadcast/);
    expect(() => addon.setThreads(0)).toThrow(RangeError);
  });

  it('shapes oneDNN rejects come back as errors', () => {
    // A 3×3 filter over a 4×4 input cannot give a 9×9 output.
    const bad = [...shape];
    bad[7] = 9;
    bad[8] = 9;
    expect(() => addon.convForward(heap, [0, 64, -1, 1024], bad, false)).toThrow(/oneDNN/);
  });
});
