/**
 * The forward pass of any ModelSpec on tfjs tensors, in training mode (batch statistics, seeded
 * dropout) or inference mode (moving statistics, no dropout). Parameters come as tensors in
 * layout order; the caller owns them.
 */
import { unreachable } from '../../common/exhaustive.js';
import * as tf from '@tensorflow/tfjs-core';
import { batchNormTrain } from './batch-norm.js';
import { dropoutMask } from './dropout.js';
import { BATCH_NORM_EPSILON, type ModelSpec, type ParamLayout } from './spec.js';

export type ForwardMode =
  | {
      training: true;
      dropoutSeed: number;
      /**
       * Each parameter, as its layer reads it, passes through this (ModelRunner hooks its gradient there,
       * which backward then reaches right after that layer's own backward).
       */
      param?: (index: number, tensor: tf.Tensor) => tf.Tensor;
    }
  | { training: false };

export interface ForwardResult {
  logits: tf.Tensor2D;
  /** Training mode only: per BatchNorm layer index, the batch mean and variance. */
  batchStats: Map<number, { mean: tf.Tensor1D; variance: tf.Tensor1D }>;
}

/** Index of each layer's first parameter in the layout, so layers can find their tensors. */
function firstParamOfLayer(layout: ParamLayout): Map<number, number> {
  const first = new Map<number, number>();
  layout.entries.forEach((e, i) => {
    if (!first.has(e.layer)) first.set(e.layer, i);
  });
  return first;
}

const activationName = (a: 'relu' | 'linear') => (a === 'relu' ? 'relu' : 'linear');

export function forward(
  model: ModelSpec,
  layout: ParamLayout,
  all: readonly tf.Tensor[],
  input: tf.Tensor4D,
  mode: ForwardMode,
): ForwardResult {
  const first = firstParamOfLayer(layout);
  const batchStats: ForwardResult['batchStats'] = new Map();
  const batch = input.shape[0];
  const hook = mode.training ? mode.param : undefined;
  let x: tf.Tensor = input;
  model.layers.forEach((layer, index) => {
    const p = first.get(index) ?? -1;
    const count = layout.entries.filter((e) => e.layer === index).length;
    const params = hook
      ? all.slice(p, p + count).map((t, i) => (layout.entries[p + i].trainable ? hook(p + i, t) : t))
      : all.slice(p, p + count);
    switch (layer.kind) {
      case 'conv2d':
        if (index === 0 && mode.training) {
          // The images need no gradient, but fused conv2d's gradient (one customGrad) computes it
          // anyway: on mnist-cnn a wasted 28×28×32→1 input gradient per step. Unfused, autodiff
          // skips it.
          const y = tf.add(tf.conv2d(x as tf.Tensor4D, params[0] as tf.Tensor4D, 1, 'same'), params[1]);
          x = layer.activation === 'relu' ? tf.relu(y) : y;
          break;
        }
        x = tf.fused.conv2d({
          x: x as tf.Tensor4D,
          filter: params[0] as tf.Tensor4D,
          bias: params[1],
          strides: 1,
          pad: 'same',
          activation: activationName(layer.activation),
        });
        break;
      case 'dense':
        x = tf.fused.matMul({
          a: x as tf.Tensor2D,
          b: params[0] as tf.Tensor2D,
          bias: params[1],
          activation: activationName(layer.activation),
        });
        break;
      case 'batchNorm': {
        const [gamma, beta, movingMean, movingVariance] = params as tf.Tensor1D[];
        if (mode.training) {
          const { y, mean, variance } = batchNormTrain(x, gamma, beta, BATCH_NORM_EPSILON, layer.activation);
          batchStats.set(index, { mean, variance });
          x = y;
        } else {
          const normed = tf.batchNorm(x, movingMean, movingVariance, beta, gamma, BATCH_NORM_EPSILON);
          x = layer.activation === 'relu' ? tf.relu(normed) : normed;
        }
        break;
      }
      case 'maxPool':
        x = tf.maxPool(x as tf.Tensor4D, layer.size, layer.size, 'valid');
        break;
      case 'dropout':
        if (mode.training && layer.rate > 0) {
          const mask = dropoutMask(
            mode.dropoutSeed,
            index,
            batch,
            x.shape.slice(1),
            layer.rate,
            layer.spatial,
          );
          x = tf.mul(x, tf.tensor(mask.values, mask.shape));
        }
        break;
      case 'flatten':
        x = tf.reshape(x, [batch, -1]);
        break;
      default:
        unreachable(layer, 'layer kind');
    }
  });
  return { logits: x as tf.Tensor2D, batchStats };
}
