/**
 * Models as data: an ordered list of typed layers. From it follow the parameter layout (the flat
 * float32 order used by checkpoints and the wire), the parameter count, and the forward pass.
 */
import { unreachable } from '../../common/exhaustive.js';

export type Activation = 'relu' | 'linear';

export type LayerSpec =
  | { kind: 'conv2d'; name: string; filters: number; kernelSize: number; activation: Activation }
  | { kind: 'batchNorm'; name: string; activation: Activation }
  | { kind: 'maxPool'; size: number }
  | { kind: 'dropout'; rate: number; spatial: boolean }
  | { kind: 'flatten' }
  | { kind: 'dense'; name: string; units: number; activation: Activation };

export interface ModelSpec {
  name: string;
  description: string;
  inputShape: readonly [number, number, number];
  layers: readonly LayerSpec[];
  classes: number;
}

/**
 * What each parameter is, which decides how a micro-batch's contribution to it is made and applied:
 * trainable roles get gradients (applied by Adam); BatchNorm's moving statistics get the
 * micro-batch's batch statistics (applied as a moving average).
 */
export type ParamRole = 'kernel' | 'bias' | 'gamma' | 'beta' | 'movingMean' | 'movingVariance';

export interface ParamEntry {
  name: string;
  role: ParamRole;
  shape: readonly number[];
  size: number;
  offset: number;
  trainable: boolean;
  /** Index into ModelSpec.layers of the layer that owns it. */
  layer: number;
}

export interface ParamLayout {
  entries: readonly ParamEntry[];
  /** Number of float32 values in a flat weights buffer (all parameters, BatchNorm statistics included). */
  size: number;
  trainableSize: number;
}

/** Keras' BatchNormalization defaults, which the published mnist-cnn used. */
export const BATCH_NORM_EPSILON = 1e-3;
export const BATCH_NORM_MOMENTUM = 0.99;

function isTrainableRole(role: ParamRole): boolean {
  return role !== 'movingMean' && role !== 'movingVariance';
}

/** Shapes of each layer's output, in NHWC without the batch axis. */
export function layerOutputShapes(model: ModelSpec): number[][] {
  let shape: number[] = [...model.inputShape];
  return model.layers.map((layer) => {
    switch (layer.kind) {
      case 'conv2d':
        shape = [shape[0], shape[1], layer.filters];
        break;
      case 'maxPool':
        shape = [Math.floor(shape[0] / layer.size), Math.floor(shape[1] / layer.size), shape[2]];
        break;
      case 'flatten':
        shape = [shape.reduce((a, b) => a * b, 1)];
        break;
      case 'dense':
        shape = [layer.units];
        break;
      case 'batchNorm':
      case 'dropout':
        break;
      default:
        unreachable(layer, 'layer kind');
    }
    return shape;
  });
}

/** The flat parameter layout, in Keras' weight order (kernel, bias; gamma, beta, mean, variance). */
export function paramLayout(model: ModelSpec): ParamLayout {
  const entries: ParamEntry[] = [];
  let offset = 0;
  let trainableSize = 0;
  const add = (layer: number, name: string, role: ParamRole, shape: number[]) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const trainable = isTrainableRole(role);
    entries.push({ name, role, shape, size, offset, trainable, layer });
    offset += size;
    if (trainable) trainableSize += size;
  };
  const outShapes = layerOutputShapes(model);
  model.layers.forEach((layer, i) => {
    const inShape = i === 0 ? [...model.inputShape] : outShapes[i - 1];
    const inChannels = inShape[inShape.length - 1];
    switch (layer.kind) {
      case 'conv2d':
        add(i, `${layer.name}/kernel`, 'kernel', [
          layer.kernelSize,
          layer.kernelSize,
          inChannels,
          layer.filters,
        ]);
        add(i, `${layer.name}/bias`, 'bias', [layer.filters]);
        break;
      case 'dense':
        add(i, `${layer.name}/kernel`, 'kernel', [inChannels, layer.units]);
        add(i, `${layer.name}/bias`, 'bias', [layer.units]);
        break;
      case 'batchNorm':
        add(i, `${layer.name}/gamma`, 'gamma', [inChannels]);
        add(i, `${layer.name}/beta`, 'beta', [inChannels]);
        add(i, `${layer.name}/moving_mean`, 'movingMean', [inChannels]);
        add(i, `${layer.name}/moving_variance`, 'movingVariance', [inChannels]);
        break;
      case 'maxPool':
      case 'flatten':
      case 'dropout':
        break; // no parameters
      default:
        unreachable(layer, 'layer kind');
    }
  });
  return { entries, size: offset, trainableSize };
}

/** Where each layer with parameters starts in the flat layout, in order. */
export function layerStarts(layout: ParamLayout): number[] {
  return layout.entries
    .filter((e, i) => i === 0 || layout.entries[i - 1].layer !== e.layer)
    .map((e) => e.offset);
}

/**
 * Each layer's forward-pass multiply-adds ×2 per sample: convolutions and dense layers; the element-wise
 * layers (BatchNorm, pooling, dropout) count 0, being a few per value against hundreds.
 */
export function layerFlopsPerSample(model: ModelSpec): number[] {
  const outShapes = layerOutputShapes(model);
  return model.layers.map((layer, i) => {
    const inShape = i === 0 ? [...model.inputShape] : outShapes[i - 1];
    const out = outShapes[i];
    if (layer.kind === 'conv2d')
      return 2 * out[0] * out[1] * out[2] * layer.kernelSize * layer.kernelSize * inShape[2];
    if (layer.kind === 'dense') return 2 * inShape[0] * layer.units;
    return 0;
  });
}

/** Forward-pass multiply-adds ×2 per sample, for the benchmark's GFLOP/s figures. */
export function forwardFlopsPerSample(model: ModelSpec): number {
  return layerFlopsPerSample(model).reduce((a, b) => a + b, 0);
}
