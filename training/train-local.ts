/**
 * Training in one process: the same contribution → applyUpdate path the cluster uses, with one
 * micro-batch per step. It is the reference the cluster's results are compared against.
 */
import { type Dataset, gatherLabels, normalizeInto, shuffledIndices } from './data/index.js';
import { initialWeights } from './models/init.js';
import { type ModelSpec, paramLayout } from './models/spec.js';
import { type AdamConfig, type AdamState, DEFAULT_ADAM, createAdamState } from './optimizer/adam.js';
import { adamRule, applyUpdate } from './optimizer/apply-update.js';
import { deriveSeed } from './rng.js';
import { type Evaluation, evaluate } from './step/evaluate.js';
import { ModelRunner } from './step/model-runner.js';

export interface LocalTrainOptions {
  model: ModelSpec;
  train: Dataset;
  test?: Dataset;
  epochs: number;
  batchSize: number;
  seed: number;
  adam?: AdamConfig;
  /** Stop after this many steps in total (for smoke runs and benchmarks). */
  maxSteps?: number;
  onStep?: (info: {
    epoch: number;
    step: number;
    stepInEpoch: number;
    stepsPerEpoch: number;
    loss: number;
    accuracy: number;
  }) => void;
  onEpoch?: (info: EpochRecord) => void;
}

interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  test?: Evaluation;
}

export interface LocalTrainResult {
  weights: Float32Array;
  adam: AdamState;
  steps: number;
  /** Training samples processed (the last batch of an epoch may be short). */
  samples: number;
  history: EpochRecord[];
}

export async function trainLocal(opts: LocalTrainOptions): Promise<LocalTrainResult> {
  const { model, train, batchSize, seed } = opts;
  if (!train.labels) throw new Error(`trainLocal: ${train.name} has no labels`);
  const layout = paramLayout(model);
  const runner = new ModelRunner(model);
  let weights = initialWeights(model, seed);
  let adam = createAdamState(layout.size);
  const images = new Float32Array(batchSize * train.pixelsPerImage);
  const labels = new Uint8Array(batchSize);
  const stepsPerEpoch = Math.ceil(train.count / batchSize);
  const history: EpochRecord[] = [];
  let step = 0;
  let samples = 0;
  try {
    for (let epoch = 0; epoch < opts.epochs && step !== opts.maxSteps; epoch++) {
      const order = shuffledIndices(train.count, deriveSeed(seed, epoch));
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      for (let s = 0; s < stepsPerEpoch && step !== opts.maxSteps; s++, step++) {
        const idx = order.subarray(s * batchSize, Math.min(train.count, (s + 1) * batchSize));
        runner.setWeights(weights);
        const c = await runner.contribution(
          {
            images: normalizeInto(train, idx, images),
            labels: gatherLabels(train.labels, idx, labels).subarray(0, idx.length),
            count: idx.length,
          },
          deriveSeed(seed, step),
        );
        ({ weights, adam } = applyUpdate(
          layout,
          weights,
          c.values,
          adam,
          adamRule(opts.adam ?? DEFAULT_ADAM),
        ));
        lossSum += c.loss * c.count;
        correct += c.correct;
        seen += c.count;
        opts.onStep?.({
          epoch,
          step,
          stepInEpoch: s,
          stepsPerEpoch,
          loss: c.loss,
          accuracy: c.correct / c.count,
        });
      }
      samples += seen;
      runner.setWeights(weights);
      const record: EpochRecord = {
        epoch,
        trainLoss: lossSum / seen,
        trainAccuracy: correct / seen,
        test: opts.test && (await evaluate(runner, opts.test)),
      };
      history.push(record);
      opts.onEpoch?.(record);
    }
    return { weights, adam, steps: step, samples, history };
  } finally {
    runner.dispose();
  }
}
