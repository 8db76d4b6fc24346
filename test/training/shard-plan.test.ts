/** The cut of the flat vector among shards, and Adam + BatchNorm averages on a window of it. */
import { describe, expect, it } from 'vitest';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { DEFAULT_ADAM, createAdamState } from '../../training/optimizer/adam.js';
import { adamRule, applyUpdate } from '../../training/optimizer/apply-update.js';
import { coversExactly, intersectInto, planShards } from '../../training/parallel/shard-plan.js';
import { Rng } from '../../training/rng.js';

describe('planShards', () => {
  it('cuts any size into S contiguous slices that differ by at most one element', () => {
    for (const [size, s] of [
      [60_874, 1],
      [60_874, 3],
      [3_488_874, 8],
      [7, 7],
      [10, 4],
    ]) {
      const slices = planShards(size, s);
      expect(slices).toHaveLength(s);
      expect(coversExactly(slices, size)).toBe(true);
      const sizes = slices.map((x) => x.size);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it('refuses a cut that would leave a shard empty, and a non-integer S', () => {
    expect(() => planShards(3, 4)).toThrow(/non-empty/);
    expect(() => planShards(10, 0)).toThrow(/positive/);
    expect(() => planShards(10, 1.5)).toThrow(/positive/);
  });

  it("intersects in the window's coordinates", () => {
    expect(intersectInto({ offset: 5, size: 10 }, { offset: 10, size: 20 })).toEqual({ offset: 0, size: 5 });
    expect(intersectInto({ offset: 12, size: 2 }, { offset: 10, size: 20 })).toEqual({ offset: 2, size: 2 });
    expect(intersectInto({ offset: 0, size: 10 }, { offset: 10, size: 20 })).toBeNull();
  });
});

describe('applyUpdate on a window', () => {
  it('S windows updated apart give the bits of one whole-vector update (Adam and BatchNorm averages, mnist-cnn)', () => {
    const layout = paramLayout(getModel('mnist-cnn'));
    const rng = new Rng(11);
    const rand = () => rng.nextFloat();
    const fill = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rand() - 0.5) * scale);
    const weights = fill(layout.size, 0.2);
    const grads = fill(layout.size, 0.01);
    const adam = {
      ...createAdamState(layout.size),
      step: 3,
      m: fill(layout.size, 0.001),
      v: fill(layout.size, 0.0001).map(Math.abs),
    };
    const whole = applyUpdate(layout, weights, grads, adam, adamRule(DEFAULT_ADAM));
    for (const s of [2, 5, 8]) {
      const w = new Float32Array(layout.size);
      const m = new Float32Array(layout.size);
      const v = new Float32Array(layout.size);
      for (const window of planShards(layout.size, s)) {
        const cut = (a: Float32Array) => a.slice(window.offset, window.offset + window.size);
        const part = applyUpdate(
          layout,
          cut(weights),
          cut(grads),
          { step: adam.step, m: cut(adam.m), v: cut(adam.v) },
          adamRule(DEFAULT_ADAM),
          { window },
        );
        w.set(part.weights, window.offset);
        m.set(part.adam.m, window.offset);
        v.set(part.adam.v, window.offset);
        expect(part.adam.step).toBe(4);
      }
      expect(Buffer.from(w.buffer).equals(Buffer.from(whole.weights.buffer)), `S=${s} weights`).toBe(true);
      expect(Buffer.from(m.buffer).equals(Buffer.from(whole.adam.m.buffer)), `S=${s} m`).toBe(true);
      expect(Buffer.from(v.buffer).equals(Buffer.from(whole.adam.v.buffer)), `S=${s} v`).toBe(true);
    }
  });
});
