/**
 * The addon's flat loops against their JS twins, bit for bit: the cluster's weights stay the same
 * whether a worker, a shard or the coordinator has the addon or not.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AdamScalars, type FlatOps, jsFlatOps, nativeFlatOps } from '../../training/math/flat-ops.js';
import { loadNativeAddon } from '../../training/kernels/native/addon.js';

function requireNative(): FlatOps {
  const ops = nativeFlatOps();
  if (!ops)
    throw new Error(
      `the native addon is needed here (npm ci builds it): ${(loadNativeAddon() as { reason: string }).reason}`,
    );
  return ops;
}

/** Gradient-like values with the awkward ones mixed in: ±0, subnormals, huge, the largest floats. */
const awkward = [
  0,
  -0,
  1e-45,
  -1e-45,
  1.17549435e-38,
  3.4028235e38,
  -3.4028235e38,
  1e-30,
  6e4,
  1e18,
  1.0000001e18,
  0.1,
  1 / 3,
];
const floats = fc
  .array(
    fc.oneof(
      fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e3, max: 1e3 }),
      fc.constantFrom(...awkward),
    ),
    { minLength: 0, maxLength: 3000 },
  )
  .map((xs) => Float32Array.from(xs));

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
const same = (a: Float32Array, b: Float32Array) => expect(Array.from(bits(a))).toEqual(Array.from(bits(b)));

/** Runs `op` on copies of the inputs with each implementation and compares every output buffer. */
function agree(
  native: FlatOps,
  inputs: Float32Array[],
  op: (ops: FlatOps, bufs: Float32Array[]) => unknown,
): void {
  const mine = inputs.map((a) => a.slice());
  const theirs = inputs.map((a) => a.slice());
  expect(op(native, mine)).toEqual(op(jsFlatOps, theirs));
  mine.forEach((a, i) => same(a, theirs[i]));
}

describe('flat ops: native and JS give the same bits', () => {
  const native = requireNative();

  it('scale, add, divide', () => {
    fc.assert(
      fc.property(floats, fc.integer({ min: 1, max: 4096 }), (a, k) => {
        const b = a.map((x, i) => x * ((i % 7) - 3));
        agree(native, [a], (ops, [x]) => ops.scaleInPlace(x, k));
        agree(native, [a], (ops, [x]) => ops.divideInPlace(x, k));
        agree(native, [a, b], (ops, [x, y]) => ops.addInto(x, y));
      }),
      { numRuns: 200 },
    );
  });

  it('finds the same first value outside the limit', () => {
    fc.assert(
      fc.property(floats, fc.nat(), fc.constantFrom(NaN, Infinity, -Infinity, 2e18), (a, at, bad) => {
        agree(native, [a], (ops, [x]) => ops.firstOutside(x, 1e18));
        if (a.length === 0) return;
        const placed = at % a.length;
        a[placed] = bad;
        agree(native, [a], (ops, [x]) => ops.firstOutside(x, 1e18));
        // Found, not −1: the first value that is not within ±1e18 (the awkward ones may come before it).
        const first = Array.prototype.findIndex.call(a, (x: number) => !(Math.abs(x) <= 1e18));
        expect(first).toBeGreaterThanOrEqual(0);
        expect(first).toBeLessThanOrEqual(placed);
        expect(native.firstOutside(a, 1e18)).toBe(first);
      }),
      { numRuns: 200 },
    );
  });

  it('Adam over many steps', () => {
    fc.assert(
      fc.property(floats, fc.integer({ min: 1, max: 10 }), (g, steps) => {
        const grads = g.map((x) => (Math.abs(x) > 1e10 ? 1 : x));
        const n = grads.length;
        const w = grads.map((x, i) => Math.sin(i) + x * 1e-3);
        const m = new Float32Array(n);
        const v = new Float32Array(n);
        agree(native, [w, grads, m, v], (ops, [wi, gi, mi, vi]) => {
          for (let t = 1; t <= steps; t++) {
            const s: AdamScalars = {
              beta1: 0.9,
              beta2: 0.999,
              epsilon: 1e-7,
              stepSize: (1e-3 * Math.sqrt(1 - 0.999 ** t)) / (1 - 0.9 ** t),
            };
            ops.adamUpdate(wi, gi, mi, vi, s);
          }
        });
      }),
      { numRuns: 100 },
    );
  });

  it('refuses mismatched or wrong-typed buffers with an error, never a stray write', () => {
    expect(() => native.addInto(new Float32Array(3), new Float32Array(2))).toThrow(/differ in length/);
    expect(() =>
      native.adamUpdate(new Float32Array(3), new Float32Array(3), new Float32Array(3), new Float32Array(4), {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
        stepSize: 1e-3,
      }),
    ).toThrow(/differ in length/);
    expect(() => native.scaleInPlace(new Float64Array(3) as unknown as Float32Array, 2)).toThrow(
      /Float32Array/,
    );
  });
});
