import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADAM, adamStep, createAdamState } from '../../training/optimizer/adam.js';
import { adamRule, applyUpdate } from '../../training/optimizer/apply-update.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { initialWeights } from '../../training/models/init.js';
import { onBackend, randomArray, relativeError } from '../helpers/backends.js';

describe('adamStep', () => {
  it('moves each weight by about lr·sign(g) on the first step', () => {
    const w = Float32Array.of(1, -2, 0.5);
    const g = Float32Array.of(0.3, -0.01, 2);
    const next = adamStep(w, g, createAdamState(3), DEFAULT_ADAM, [{ offset: 0, size: 3 }]);
    expect([...next.weights].map((v, i) => (v - w[i]) / DEFAULT_ADAM.learningRate)).toEqual(
      [-1, 1, -1].map((v) => expect.closeTo(v, 3)),
    );
    expect(next.state.step).toBe(1);
  });

  it('is pure, and updates only the given ranges', () => {
    const w = randomArray(10, 1);
    const g = randomArray(10, 2);
    const state = createAdamState(10);
    const before = [w.slice(), g.slice(), state.m.slice(), state.v.slice()];
    const next = adamStep(w, g, state, DEFAULT_ADAM, [{ offset: 2, size: 3 }]);
    expect([w, g, state.m, state.v]).toEqual(before);
    expect(state.step).toBe(0);
    for (const i of [0, 1, 5, 9]) expect(next.weights[i]).toBe(w[i]);
    for (const i of [2, 3, 4]) expect(next.weights[i]).not.toBe(w[i]);
  });

  it("tracks tfjs's own Adam optimizer over 20 steps", async () => {
    const size = 50;
    const grads = Array.from({ length: 20 }, (_, t) => randomArray(size, 100 + t).map((v) => v * 0.1));
    const expected = await onBackend('cpu', () => {
      const variable = tf.variable(tf.tensor1d(randomArray(size, 7)));
      const opt = tf.train.adam(
        DEFAULT_ADAM.learningRate,
        DEFAULT_ADAM.beta1,
        DEFAULT_ADAM.beta2,
        DEFAULT_ADAM.epsilon,
      );
      for (const g of grads) opt.applyGradients([{ name: variable.name, tensor: tf.tensor1d(g) }]);
      return variable.dataSync() as Float32Array;
    });
    let w = randomArray(size, 7);
    let state = createAdamState(size);
    for (const g of grads)
      ({ weights: w, state } = adamStep(w, g, state, DEFAULT_ADAM, [{ offset: 0, size }]));
    expect(relativeError(w, expected)).toBeLessThan(1e-5);
  });

  it('in place computes the same bits into the given buffers', () => {
    const size = 1000;
    const w = randomArray(size, 3);
    const g = randomArray(size, 4);
    const state = createAdamState(size);
    const pure = adamStep(w, g, state, DEFAULT_ADAM, [{ offset: 10, size: 900 }]);
    const mine = { w: w.slice(), m: state.m.slice(), v: state.v.slice() };
    const inPlace = adamStep(
      mine.w,
      g,
      { step: 0, m: mine.m, v: mine.v },
      DEFAULT_ADAM,
      [{ offset: 10, size: 900 }],
      true,
    );
    expect(inPlace.weights).toBe(mine.w);
    expect(inPlace.state.m).toBe(mine.m);
    expect(Buffer.from(mine.w.buffer).equals(Buffer.from(pure.weights.buffer))).toBe(true);
    expect(Buffer.from(mine.v.buffer).equals(Buffer.from(pure.state.v.buffer))).toBe(true);
    // the pure call left w alone
    expect(Buffer.from(w.buffer).equals(Buffer.from(mine.w.buffer))).toBe(false);
  });

  it('rejects mismatched sizes', () => {
    expect(() =>
      adamStep(new Float32Array(3), new Float32Array(2), createAdamState(3), DEFAULT_ADAM, []),
    ).toThrow(/size mismatch/);
  });
});

describe('applyUpdate', () => {
  it('applies Adam to trainable parameters and a moving average to BatchNorm statistics', () => {
    const model = getModel('mnist-cnn');
    const layout = paramLayout(model);
    const w = initialWeights(model, 1);
    const contribution = new Float32Array(layout.size).fill(0.5);
    const { weights, adam } = applyUpdate(
      layout,
      w,
      contribution,
      createAdamState(layout.size),
      adamRule(DEFAULT_ADAM),
      { momentum: 0.99 },
    );
    const byName = (n: string) => layout.entries.find((e) => e.name === n)!;
    expect(weights[byName('bn1/moving_mean').offset]).toBeCloseTo(0.99 * 0 + 0.01 * 0.5, 7);
    expect(weights[byName('bn1/moving_variance').offset]).toBeCloseTo(0.99 * 1 + 0.01 * 0.5, 7);
    expect(weights[byName('bn1/gamma').offset]).toBeCloseTo(1 - DEFAULT_ADAM.learningRate, 5);
    expect(adam.m[byName('bn1/moving_mean').offset]).toBe(0);
  });
});
