/**
 * The synthetic backend's time, layer by layer: a third forward, two thirds backward, each layer's share by its
 * multiply-adds; backward reports each layer's values final last layer first as its share ends, and forward
 * waits for each layer's weights.
 */
import { describe, expect, it } from 'vitest';
import { SyntheticRunner } from '../../training/backends/synthetic.js';
import { FORWARD_SHARE, syntheticSchedule } from '../../training/backends/synthetic-schedule.js';
import { layerFlopsPerSample, paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';

const model = getModel('mnist-cnn');
const layout = paramLayout(model);
const batch = { images: new Float32Array(4 * 784), labels: Uint8Array.of(0, 1, 2, 0), count: 4 };

describe('synthetic schedule', () => {
  it('mnist-cnn: times add up to the micro-batch, in proportion to FLOPs; ranges tile the layout in order', () => {
    const schedule = syntheticSchedule(model, layout, 900);
    const sum = (f: (l: (typeof schedule)[number]) => number) => schedule.reduce((a, l) => a + f(l), 0);
    expect(sum((l) => l.forwardMs)).toBeCloseTo(900 * FORWARD_SHARE, 6);
    expect(sum((l) => l.backwardMs)).toBeCloseTo(900 * (1 - FORWARD_SHARE), 6);
    const flops = layerFlopsPerSample(model);
    const total = flops.reduce((a, b) => a + b, 0);
    for (const l of schedule) expect(l.backwardMs).toBeCloseTo((600 * flops[l.layer]) / total, 6);
    expect(schedule[0].from).toBe(0);
    expect(schedule.at(-1)!.to).toBe(layout.size);
    for (let i = 1; i < schedule.length; i++) expect(schedule[i].from).toBe(schedule[i - 1].to);
    // The dense layers: most of the values, a small part of the time.
    const dense = schedule.filter((l) => model.layers[l.layer].kind === 'dense');
    expect(dense.reduce((a, l) => a + l.to - l.from, 0) / layout.size).toBeGreaterThan(0.9);
    expect(dense.reduce((a, l) => a + l.backwardMs, 0) / 600).toBeLessThan(0.3);
  });

  it('a micro-batch reports each layer final, last first, as its backward share ends, and waits for late weights', async () => {
    const runner = new SyntheticRunner(model, 300);
    const schedule = syntheticSchedule(model, layout, 300);
    const started = performance.now();
    const finals: { from: number; to: number; at: number }[] = [];
    let release!: () => void;
    const late = new Promise<void>((resolve) => (release = resolve));
    // The first layer's weights land 100 ms late: everything moves with them.
    setTimeout(release, 100);
    const c = await runner.contribution(
      batch,
      7,
      undefined,
      (_, from, to) => finals.push({ from, to, at: performance.now() - started }),
      (from) => (from === 0 ? late : Promise.resolve()),
    );
    const took = performance.now() - started;
    expect(c.weightsWaitMs).toBeGreaterThan(90);
    expect(took).toBeGreaterThan(390);
    expect(took).toBeLessThan(600);
    const withValues = schedule.filter((l) => l.to > l.from).toReversed();
    expect(finals.map(({ from, to }) => [from, to])).toEqual(withValues.map((l) => [l.from, l.to]));
    // The last layer is final after forward (and the wait) and its own backward share, well before the end.
    const last = withValues[0];
    expect(finals[0].at).toBeGreaterThan(100 + 100 + last.backwardMs - 5);
    expect(finals[0].at).toBeLessThan(took - 100);
  });
});
