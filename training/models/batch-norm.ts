/**
 * Training-mode BatchNorm (+ optional ReLU). Uses gradfleet's fused kernel where the active backend
 * has it (wasm); elsewhere (cpu, tfjs-node) the same maths from stock ops, differentiated by autodiff.
 * The cpu composite is also the reference that the fused kernel's gradients are tested against.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BatchNormTrain, type BatchNormTrainAttrs } from '../kernels/batch-norm-train.js';
import { hasFusedBatchNormTrain } from '../kernels/register.js';
import type { Activation } from './spec.js';

export interface BatchNormTrainResult {
  y: tf.Tensor;
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

export function batchNormTrain(
  x: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
  activation: Activation,
): BatchNormTrainResult {
  const relu = activation === 'relu';
  if (hasFusedBatchNormTrain()) {
    const attrs: BatchNormTrainAttrs = { epsilon, relu };
    const [y, mean, variance] = tf
      .engine()
      .runKernel(BatchNormTrain, { x, gamma, beta }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return { y, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
  }
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const { mean, variance } = tf.moments(x, axes);
  const normed = tf.batchNorm(x, mean, variance, beta, gamma, epsilon);
  // The statistics never reach the loss as outputs, so autodiff sends no gradient through them.
  return { y: relu ? tf.relu(normed) : normed, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
}
