/**
 * Local steps' math without sockets: the outer Nesterov step against PyTorch's formulation worked by hand,
 * the update rule's treatment of BatchNorm statistics, and a replica's contribution against its inner steps
 * taken one by one through the plain runner and Adam.
 */
import { describe, expect, it } from 'vitest';
import { loadMnist, normalizeInto } from '../../training/data/index.js';
import { initialWeights } from '../../training/models/init.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { DEFAULT_ADAM, createAdamState } from '../../training/optimizer/adam.js';
import { adamRule, applyUpdate } from '../../training/optimizer/apply-update.js';
import { DEFAULT_OUTER, nesterovStep } from '../../training/optimizer/outer.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { innerStepSeed, innerStepsOfRound, replicaContribution } from '../../training/step/local-steps.js';
import { useBackend } from '../helpers/backends.js';

describe('nesterovStep', () => {
  it("follows PyTorch's buf = μ·buf + δ; w -= lr·(δ + μ·buf), only inside the ranges", () => {
    const w = Float32Array.from([1, 2, 3, 4]);
    const buf = new Float32Array(4);
    const config = { learningRate: 0.5, momentum: 0.9 };
    const ranges = [{ offset: 1, size: 2 }];
    nesterovStep(w, Float32Array.from([9, 0.1, -0.2, 9]), buf, config, ranges);
    // step 1: buf = δ; w -= 0.5·(δ + 0.9·δ) = 0.95·δ
    expect(Array.from(buf)).toEqual([0, Math.fround(0.1), Math.fround(-0.2), 0]);
    expect(w[1]).toBe(Math.fround(2 - 0.5 * (0.1 + 0.9 * 0.1)));
    expect(w[2]).toBe(Math.fround(3 - 0.5 * (-0.2 + 0.9 * -0.2)));
    expect([w[0], w[3]]).toEqual([1, 4]);
    nesterovStep(w, Float32Array.from([0, 0.3, 0.3, 0]), buf, config, ranges);
    const b1 = Math.fround(0.9 * Math.fround(0.1) + 0.3);
    expect(buf[1]).toBe(b1);
    expect(w[1]).toBe(Math.fround(Math.fround(2 - 0.5 * (0.1 + 0.9 * 0.1)) - 0.5 * (0.3 + 0.9 * b1)));
  });

  it('refuses buffers of different sizes', () => {
    expect(() =>
      nesterovStep(new Float32Array(3), new Float32Array(2), new Float32Array(3), DEFAULT_OUTER, []),
    ).toThrow(/size mismatch/);
  });
});

describe('innerStepsOfRound', () => {
  it('counts every replica’s inner steps, a short last replica and a short last inner batch included', () => {
    const local = { steps: 4, batchSize: 8 };
    expect(innerStepsOfRound(256, local)).toBe(32);
    // 88 samples: replicas of 32, 32 and 24 samples, the last one 3 inner steps.
    expect(innerStepsOfRound(88, local)).toBe(11);
    // 5 samples: one replica, one short inner step.
    expect(innerStepsOfRound(5, local)).toBe(1);
    expect(innerStepsOfRound(33, local)).toBe(5);
  });
});

describe("applyUpdate's nesterov rule", () => {
  it('steps the trainable part, sets BatchNorm moving statistics to start − mean delta, keeps momentum in m', () => {
    const model = getModel('mnist-cnn');
    const layout = paramLayout(model);
    const w = initialWeights(model, 1);
    const delta = new Float32Array(layout.size).fill(0.25);
    const state = createAdamState(layout.size);
    const rule = { kind: 'nesterov', ...DEFAULT_OUTER } as const;
    const next = applyUpdate(layout, w, delta, state, rule);
    const byName = (n: string) => layout.entries.find((e) => e.name === n)!;
    const mean = byName('bn1/moving_mean').offset;
    const kernel = byName(layout.entries.find((e) => e.trainable)!.name).offset;
    expect(next.weights[mean]).toBe(Math.fround(w[mean] - 0.25));
    expect(next.weights[kernel]).toBe(Math.fround(w[kernel] - 0.7 * (0.25 + 0.9 * 0.25)));
    expect(next.adam.m[kernel]).toBe(0.25);
    expect(next.adam.m[mean]).toBe(0);
    expect(next.adam.v.every((x) => x === 0)).toBe(true);
    expect(next.adam.step).toBe(1);
    // Not in place unless asked: the inputs are untouched.
    expect(state.m[kernel]).toBe(0);
    expect(next.weights).not.toBe(w);
  });
});

// mnist-cnn has dropout (the inner steps' seeds matter), mnist-small has none.
describe.each([
  ['mnist-cnn', 'native'],
  ['mnist-small', 'wasm'],
] as const)('a replica of %s on %s', (name, backend) => {
  const model = getModel(name);
  const layout = paramLayout(model);
  const train = loadMnist('train');
  // 3 inner batches of 8 and a short one of 5.
  const count = 29;
  const batchSize = 8;
  const idx = Uint32Array.from({ length: count }, (_, i) => i * 7);
  const images = normalizeInto(train, idx, new Float32Array(count * 784));
  const labels = Uint8Array.from(idx, (i) => train.labels![i]);
  const adam = { ...DEFAULT_ADAM, learningRate: 0.003 };
  const start = initialWeights(model, 5);

  it('contributes start − end of its inner Adam steps, bit for bit, and leaves the runner at the start', async () => {
    await useBackend(backend);
    const runner = new ModelRunner(model);
    runner.setWeights(start);
    const got = await replicaContribution(runner, start, { images, labels, count }, 42, { adam, batchSize });
    // The same inner steps one by one.
    const plain = new ModelRunner(model);
    let w: Float32Array = start.slice();
    let moments = createAdamState(layout.size);
    let lossSum = 0;
    let correct = 0;
    for (let h = 0; h * batchSize < count; h++) {
      const at = h * batchSize;
      const n = Math.min(batchSize, count - at);
      plain.setWeights(w);
      const c = await plain.contribution(
        { images: images.subarray(at * 784, (at + n) * 784), labels: labels.subarray(at, at + n), count: n },
        innerStepSeed(42, h),
      );
      ({ weights: w, adam: moments } = applyUpdate(layout, w, c.values, moments, adamRule(adam)));
      lossSum += c.loss * n;
      correct += c.correct;
    }
    expect(moments.step).toBe(4);
    const expected = start.map((s, i) => s - w[i]);
    expect(got.values).toEqual(expected);
    expect(got.count).toBe(count);
    expect(got.correct).toBe(correct);
    expect(got.loss).toBeCloseTo(lossSum / count, 12);
    expect(got.values.some((x) => x !== 0)).toBe(true);
    // The runner holds the round's start again: the next replica computes from it.
    const first = { images: images.subarray(0, 8 * 784), labels: labels.subarray(0, 8), count: 8 };
    plain.setWeights(start);
    expect((await runner.contribution(first, 1)).values).toEqual((await plain.contribution(first, 1)).values);
    // A different replica seed draws other dropout masks: not the same delta.
    const other = await replicaContribution(runner, start, { images, labels, count }, 43, {
      adam,
      batchSize,
    });
    if (model.layers.some((l) => l.kind === 'dropout')) expect(other.values).not.toEqual(got.values);
    else expect(other.values).toEqual(got.values);
    runner.dispose();
    plain.dispose();
  }, 180_000);

  it('with final: tells each layer’s delta during the last inner step’s backward, with the bits of the whole update', async () => {
    await useBackend(backend);
    const runner = new ModelRunner(model);
    runner.setWeights(start);
    const whole = await replicaContribution(runner, start, { images, labels, count }, 42, {
      adam,
      batchSize,
    });
    const told: { from: number; to: number; values: Float32Array }[] = [];
    const got = await replicaContribution(
      runner,
      start,
      { images, labels, count },
      42,
      { adam, batchSize },
      undefined,
      (values, from, to) => told.push({ from, to, values: values.slice(from, to) }),
    );
    expect(got.values).toEqual(whole.values);
    // Several layers, last first, each ending where the one before began.
    expect(told.length).toBeGreaterThan(1);
    expect(told[0].to).toBe(layout.size);
    for (let i = 1; i < told.length; i++) expect(told[i].to).toBe(told[i - 1].from);
    // What was told was already the final delta there.
    for (const t of told) expect(t.values).toEqual(got.values.slice(t.from, t.to));
    runner.dispose();
  }, 180_000);
});
