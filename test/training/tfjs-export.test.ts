import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMnist, normalizeInto } from '../../training/data/index.js';
import {
  loadTfjsModelFromDir,
  toLayersArtifacts,
  writeTfjsModel,
} from '../../training/export/tfjs-layers.js';
import { initialWeights } from '../../training/models/init.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { maxAbsDiff, randomArray, useBackend } from '../helpers/backends.js';

const COUNT = 32;
let root: string;
let images: Float32Array;

beforeAll(async () => {
  await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'gradfleet-tfjs-export-'));
  const test = loadMnist('test');
  images = normalizeInto(
    test,
    Array.from({ length: COUNT }, (_, i) => i),
    new Float32Array(COUNT * 784),
  );
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Initial weights with BatchNorm statistics moved off (μ=0, σ²=1), so their mapping matters. */
function exportedWeights(name: string): Float32Array {
  const model = getModel(name);
  const weights = initialWeights(model, 42);
  for (const e of paramLayout(model).entries) {
    const noise = randomArray(e.size, e.offset + 1);
    const view = weights.subarray(e.offset, e.offset + e.size);
    if (e.role === 'movingMean') noise.forEach((v, i) => (view[i] = 0.2 * v));
    if (e.role === 'movingVariance') noise.forEach((v, i) => (view[i] = 1 + 0.5 * v));
    if (e.role === 'gamma') noise.forEach((v, i) => (view[i] = 1 + 0.3 * v));
    if (e.role === 'beta' || e.role === 'bias') noise.forEach((v, i) => (view[i] = 0.1 * v));
  }
  return weights;
}

describe.each([
  ['mnist-cnn', 3_488_874],
  ['mnist-small', 60_874],
])('%s exported as a tfjs Layers model', (name, params) => {
  it('loads with tf.loadLayersModel and predicts what ModelRunner does in inference mode', async () => {
    const model = getModel(name);
    const weights = exportedWeights(name);
    const dir = join(root, name);
    await writeTfjsModel(dir, model, weights);
    expect((await readdir(dir)).sort()).toEqual(['model.json', 'weights.bin']);

    const loaded = await tf.loadLayersModel(loadTfjsModelFromDir(dir));
    expect(loaded.countParams()).toBe(params);
    expect(loaded.countParams()).toBe(paramLayout(model).size);
    const out = tf.tidy(() => loaded.predict(tf.tensor4d(images, [COUNT, 28, 28, 1])) as tf.Tensor);
    expect(out.shape).toEqual([COUNT, 10]);
    const actual = out.dataSync() as Float32Array;
    out.dispose();
    loaded.dispose();

    const runner = new ModelRunner(model);
    runner.setWeights(weights);
    const expected = await runner.logits(images, COUNT);
    runner.dispose();
    // Not a vacuous comparison: the logits vary and are not tiny.
    expect(Math.max(...expected.map(Math.abs))).toBeGreaterThan(0.1);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-4);
  });
});

describe('model.json', () => {
  it('is JSON in layers-model format with one weights shard listing every parameter in layout order', async () => {
    const model = getModel('mnist-small');
    const { modelJson, weightsFile } = await writeTfjsModel(
      join(root, 'json'),
      model,
      initialWeights(model, 1),
    );
    const json = JSON.parse(await readFile(modelJson, 'utf8'));
    expect(json.format).toBe('layers-model');
    expect(json.generatedBy).toBe('gradfleet');
    expect(json.modelTopology.class_name).toBe('Sequential');
    expect(json.weightsManifest).toHaveLength(1);
    expect(json.weightsManifest[0].paths).toEqual(['weights.bin']);
    expect(json.weightsManifest[0].weights.map((w: { name: string }) => w.name)).toEqual(
      paramLayout(model).entries.map((e) => e.name),
    );
    expect((await readFile(weightsFile)).byteLength).toBe(4 * 60_874);
  });

  it('gives spec-less layers unique Keras-style names and rejects weights of the wrong size', () => {
    const model = getModel('mnist-cnn');
    const artifacts = toLayersArtifacts(model, initialWeights(model, 1));
    const layers = (artifacts.modelTopology as { config: { layers: { config: { name: string } }[] } }).config
      .layers;
    const names = layers.map((l) => l.config.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names.slice(0, 6)).toEqual(['input_1', 'conv1', 'bn1', 'activation_1', 'conv2', 'bn2']);
    expect(() => toLayersArtifacts(model, new Float32Array(3))).toThrow(/3 values, the layout needs 3488874/);
  });
});
