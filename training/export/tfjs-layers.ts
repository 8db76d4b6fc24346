/**
 * Exports a model in TensorFlow.js Layers format (model.json + one weights shard), loadable with
 * tf.loadLayersModel and convertible to Keras with tensorflowjs_converter. Our layout already uses
 * Keras' weight names, shapes (HWIO conv kernels, [in, out] dense kernels), weight order and NHWC
 * flatten order, so the weights are written as they are.
 */
import { unreachable } from '../../common/exhaustive.js';
import { readFile } from 'node:fs/promises';
import { makeDir } from '../../common/make-dir.js';
import { writeFileAtomic } from '../../common/write-atomic.js';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM, type ModelSpec, paramLayout } from '../models/spec.js';

const MODEL_JSON = 'model.json';
const WEIGHTS_FILE = 'weights.bin';

type LayerJson = { class_name: string; config: Record<string, unknown> };

/** Keras Sequential topology: our layers, plus an Activation after each BatchNorm that has one. */
function topology(model: ModelSpec): LayerJson[] {
  const used = new Set(model.layers.flatMap((l) => ('name' in l ? [l.name] : [])));
  const counters = new Map<string, number>();
  // Keras-style generated names (max_pooling2d_1, dropout_2, …), skipping any our spec uses.
  const nameFor = (prefix: string): string => {
    let name: string;
    do {
      const n = (counters.get(prefix) ?? 0) + 1;
      counters.set(prefix, n);
      name = `${prefix}_${n}`;
    } while (used.has(name));
    used.add(name);
    return name;
  };
  const layer = (className: string, name: string, config: Record<string, unknown> = {}): LayerJson => ({
    class_name: className,
    config: { name, trainable: true, dtype: 'float32', ...config },
  });

  const out: LayerJson[] = [
    {
      class_name: 'InputLayer',
      config: {
        name: nameFor('input'),
        batch_input_shape: [null, ...model.inputShape],
        dtype: 'float32',
        sparse: false,
      },
    },
  ];
  for (const l of model.layers) {
    switch (l.kind) {
      case 'conv2d':
        out.push(
          layer('Conv2D', l.name, {
            filters: l.filters,
            kernel_size: [l.kernelSize, l.kernelSize],
            strides: [1, 1],
            padding: 'same',
            data_format: 'channels_last',
            dilation_rate: [1, 1],
            activation: l.activation,
            use_bias: true,
          }),
        );
        break;
      case 'batchNorm':
        out.push(
          layer('BatchNormalization', l.name, {
            axis: -1,
            momentum: BATCH_NORM_MOMENTUM,
            epsilon: BATCH_NORM_EPSILON,
            center: true,
            scale: true,
          }),
        );
        if (l.activation !== 'linear')
          out.push(layer('Activation', nameFor('activation'), { activation: l.activation }));
        break;
      case 'maxPool':
        out.push(
          layer('MaxPooling2D', nameFor('max_pooling2d'), {
            pool_size: [l.size, l.size],
            strides: [l.size, l.size],
            padding: 'valid',
            data_format: 'channels_last',
          }),
        );
        break;
      case 'dropout':
        // tfjs has no SpatialDropout2D; Keras defines it as Dropout with one mask per channel,
        // which is this noise_shape (and dropout is the identity at inference anyway).
        out.push(
          l.spatial
            ? layer('Dropout', nameFor('spatial_dropout2d'), {
                rate: l.rate,
                noise_shape: [null, 1, 1, null],
                seed: null,
              })
            : layer('Dropout', nameFor('dropout'), { rate: l.rate, noise_shape: null, seed: null }),
        );
        break;
      case 'flatten':
        out.push(layer('Flatten', nameFor('flatten'), { data_format: 'channels_last' }));
        break;
      case 'dense':
        out.push(layer('Dense', l.name, { units: l.units, activation: l.activation, use_bias: true }));
        break;
      default:
        unreachable(l, 'layer kind');
    }
  }
  return out;
}

export function toLayersArtifacts(model: ModelSpec, weights: Float32Array): tf.io.ModelArtifacts {
  const layout = paramLayout(model);
  if (weights.length !== layout.size) {
    throw new Error(`${model.name}: weights have ${weights.length} values, the layout needs ${layout.size}`);
  }
  return {
    format: 'layers-model',
    generatedBy: 'gradfleet',
    convertedBy: null,
    modelTopology: {
      class_name: 'Sequential',
      config: { name: model.name, layers: topology(model) },
      keras_version: 'tfjs-layers 4.22.0',
      backend: 'tensor_flow.js',
    },
    weightSpecs: layout.entries.map((e) => ({
      name: e.name,
      shape: [...e.shape],
      dtype: 'float32' as const,
    })),
    // Entries tile the flat buffer in order, so it is the weight data as is (copied: we own it).
    weightData: weights.slice().buffer,
  };
}

export async function writeTfjsModel(
  dir: string,
  model: ModelSpec,
  weights: Float32Array,
): Promise<{ modelJson: string; weightsFile: string }> {
  const artifacts = toLayersArtifacts(model, weights);
  const json: tf.io.ModelJSON = {
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy,
    modelTopology: artifacts.modelTopology!,
    weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs! }],
  };
  const modelJson = join(dir, MODEL_JSON);
  const weightsFile = join(dir, WEIGHTS_FILE);
  await makeDir(dir);
  // Weights first: a model.json on disk always has its weights beside it.
  await writeFileAtomic(weightsFile, new Uint8Array(artifacts.weightData as ArrayBuffer));
  await writeFileAtomic(modelJson, JSON.stringify(json));
  return { modelJson, weightsFile };
}

/**
 * A load handler for a model.json and its shards in `dir` (Node has no file:// handler without tfjs-node).
 */
export function loadTfjsModelFromDir(dir: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8')) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const shards = await Promise.all(
          manifest.flatMap((group) => group.paths).map((p) => readFile(join(dir, p))),
        );
        const bytes = Buffer.concat(shards);
        const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
        return [tf.io.getWeightSpecs(manifest), data];
      });
    },
  };
}
