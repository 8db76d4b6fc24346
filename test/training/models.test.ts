import { describe, expect, it } from 'vitest';
import { initialWeights } from '../../training/models/init.js';
import { dropoutMask } from '../../training/models/dropout.js';
import { forwardFlopsPerSample, layerOutputShapes, paramLayout } from '../../training/models/spec.js';
import { toLayersArtifacts } from '../../training/export/tfjs-layers.js';
import { getModel, modelNames } from '../../training/models/zoo.js';

describe('reference models', () => {
  it('mnist-cnn has exactly 3,488,874 parameters', () => {
    expect(paramLayout(getModel('mnist-cnn')).size).toBe(3_488_874);
  });

  it('mnist-small has exactly 60,874 parameters', () => {
    expect(paramLayout(getModel('mnist-small')).size).toBe(60_874);
  });

  it('an unknown model name is an error that lists the known ones', () => {
    expect(() => getModel('resnet')).toThrow(/unknown model 'resnet'; known models: mnist-cnn, mnist-small/);
    expect(modelNames()).toEqual(['mnist-cnn', 'mnist-small']);
  });

  it('lays parameters out in Keras order with BatchNorm statistics not trainable', () => {
    const layout = paramLayout(getModel('mnist-cnn'));
    expect(layout.entries.slice(0, 6).map((e) => e.name)).toEqual([
      'conv1/kernel',
      'conv1/bias',
      'bn1/gamma',
      'bn1/beta',
      'bn1/moving_mean',
      'bn1/moving_variance',
    ]);
    expect(layout.entries[0].shape).toEqual([3, 3, 1, 32]);
    expect(layout.entries.find((e) => e.name === 'dense1/kernel')?.shape).toEqual([6272, 512]);
    // Every BatchNorm layer has 2×C non-trainable values: 2 × (32+32+64+64+128+512+256).
    expect(layout.size - layout.trainableSize).toBe(2 * (32 + 32 + 64 + 64 + 128 + 512 + 256));
    let offset = 0;
    for (const e of layout.entries) {
      expect(e.offset).toBe(offset);
      offset += e.size;
    }
  });

  it('counts forward FLOPs per sample from the layer shapes', () => {
    // conv16 on 28×28×1, conv32 on 14×14×16, conv64 on 7×7×32, dense 576→64, 64→10.
    const expected =
      2 * (28 * 28 * 16 * 9 + 14 * 14 * 32 * 9 * 16 + 7 * 7 * 64 * 9 * 32 + 576 * 64 + 64 * 10);
    expect(forwardFlopsPerSample(getModel('mnist-small'))).toBe(expected);
  });

  it('initialises deterministically from the seed (Glorot-uniform kernels, BN γ=1 and σ²=1)', () => {
    const model = getModel('mnist-small');
    const a = initialWeights(model, 7);
    expect(initialWeights(model, 7)).toEqual(a);
    expect(initialWeights(model, 8)).not.toEqual(a);
    const kernel = paramLayout(model).entries[0];
    const limit = Math.sqrt(6 / (9 * 1 + 9 * 16));
    const values = a.subarray(kernel.offset, kernel.offset + kernel.size);
    expect(Math.max(...values)).toBeLessThanOrEqual(limit);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(-limit);
    const cnn = paramLayout(getModel('mnist-cnn'));
    const w = initialWeights(getModel('mnist-cnn'), 1);
    const gamma = cnn.entries.find((e) => e.name === 'bn1/gamma')!;
    const variance = cnn.entries.find((e) => e.name === 'bn1/moving_variance')!;
    expect([...w.subarray(gamma.offset, gamma.offset + gamma.size)].every((v) => v === 1)).toBe(true);
    expect([...w.subarray(variance.offset, variance.offset + variance.size)].every((v) => v === 1)).toBe(
      true,
    );
  });
});

describe('seeded dropout masks', () => {
  it('are a function of the seed and layer only, scaled by 1/(1-rate)', () => {
    const a = dropoutMask(42, 5, 16, [7, 7, 64], 0.3, true);
    expect(a.shape).toEqual([16, 1, 1, 64]);
    expect(dropoutMask(42, 5, 16, [7, 7, 64], 0.3, true).values).toEqual(a.values);
    expect(dropoutMask(43, 5, 16, [7, 7, 64], 0.3, true).values).not.toEqual(a.values);
    expect(dropoutMask(42, 6, 16, [7, 7, 64], 0.3, true).values).not.toEqual(a.values);
    const kept = new Set(a.values);
    expect([...kept].sort()).toEqual([0, 1 / 0.7].map((v) => Math.fround(v)).sort());
    const dropped = a.values.filter((v) => v === 0).length / a.values.length;
    expect(dropped).toBeGreaterThan(0.2);
    expect(dropped).toBeLessThan(0.4);
  });

  it('drops whole units for dense layers and rejects a rate outside [0, 1)', () => {
    expect(dropoutMask(1, 0, 8, [512], 0.3, false).shape).toEqual([8, 512]);
    expect(() => dropoutMask(1, 0, 8, [512], 1, false)).toThrow(/rate/);
  });
});

describe('layer kinds', () => {
  it('a layer kind no switch handles fails loudly instead of losing its parameters', () => {
    const model = getModel('mnist-small');
    const alien = {
      ...model,
      layers: [...model.layers, { kind: 'conv3d', name: 'c3', filters: 4 }],
    } as unknown as typeof model;
    expect(() => paramLayout(alien)).toThrow(/unhandled layer kind: .*conv3d/);
    expect(() => layerOutputShapes(alien)).toThrow(/unhandled layer kind/);
    expect(() => toLayersArtifacts(alien, new Float32Array(paramLayout(model).size))).toThrow(
      /unhandled layer kind/,
    );
  });
});
