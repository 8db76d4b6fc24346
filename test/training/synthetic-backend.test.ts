/**
 * The synthetic compute stand-in: seeded, the model's real layout, plausible values, and it waits rather than
 * computes.
 */
import { describe, expect, it } from 'vitest';
import { SyntheticRunner, fillSyntheticContribution } from '../../training/backends/synthetic.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { dropoutSeed } from '../../training/parallel/step-plan.js';

const model = getModel('mnist-cnn');
const layout = paramLayout(model);
const batch = (labels: number[]) => ({
  images: new Float32Array(labels.length * 784),
  labels: Uint8Array.from(labels),
  count: labels.length,
});

describe('synthetic backend', () => {
  it("fills mnist-cnn's 3,488,874 values, the same for the same (seed, step, micro-batch) and different otherwise", () => {
    expect(layout.size).toBe(3_488_874);
    const a = fillSyntheticContribution(layout, dropoutSeed(1, 5, 2), new Float32Array(layout.size));
    const again = fillSyntheticContribution(layout, dropoutSeed(1, 5, 2), new Float32Array(layout.size));
    expect(Buffer.from(again.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    for (const other of [dropoutSeed(1, 5, 3), dropoutSeed(1, 6, 2), dropoutSeed(2, 5, 2)]) {
      const b = fillSyntheticContribution(layout, other, new Float32Array(layout.size));
      let same = 0;
      for (let i = 0; i < b.length; i++) if (b[i] === a[i]) same++;
      expect(same / b.length).toBeLessThan(0.01);
    }
  });

  it('gives gradients of ~1e-3, batch means near 0 and positive batch variances, all finite', () => {
    const values = fillSyntheticContribution(layout, 42, new Float32Array(layout.size));
    for (const e of layout.entries) {
      const v = values.subarray(e.offset, e.offset + e.size);
      let lo = Infinity;
      let hi = -Infinity;
      let sum = 0;
      let nonFinite = 0;
      for (const x of v) {
        if (!Number.isFinite(x)) nonFinite++;
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
        sum += x;
      }
      expect(nonFinite).toBe(0);
      if (e.trainable) {
        expect(Math.max(-lo, hi)).toBeLessThanOrEqual(1e-3);
        if (e.size >= 64) expect(hi - lo).toBeGreaterThan(1e-3); // spread over the range, not a constant
      } else if (e.role === 'movingVariance') {
        expect(lo).toBeGreaterThan(0);
        expect(sum / e.size).toBeCloseTo(1, 0);
      } else {
        expect(Math.max(-lo, hi)).toBeLessThanOrEqual(0.1);
      }
    }
  });

  it('waits its micro-batch time without spending it on the CPU, and reports chance-level placeholders', async () => {
    const runner = new SyntheticRunner(model, 300);
    const cpu = process.cpuUsage();
    const started = performance.now();
    const c = await runner.contribution(batch([0, 3, 0, 7]), 9);
    const wallMs = performance.now() - started;
    const { user, system } = process.cpuUsage(cpu);
    expect(wallMs).toBeGreaterThanOrEqual(299);
    expect(wallMs).toBeLessThan(1000);
    // Generating 3.5M values costs some CPU; the rest of the 300 ms is a timer.
    expect((user + system) / 1000).toBeLessThan(wallMs / 2);
    expect(c.values.length).toBe(layout.size);
    expect(c.loss).toBeCloseTo(Math.log(10), 12);
    expect(c.correct).toBe(2); // the labels that are 0: argmax of equal logits
    expect(c.count).toBe(4);
    expect(Array.from(runner.logits(new Float32Array(2 * 784), 2))).toEqual(new Array(20).fill(0));
    expect(() => runner.setWeights(new Float32Array(10))).toThrow(/layout needs 3488874/);
  });
});
