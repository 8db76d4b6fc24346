/**
 * `gradfleet train`: trains a model on MNIST (or a user's IDX/CSV files) and reports test accuracy.
 * Runs in this process today; the coordinator + workers cluster plugs in behind the same flags.
 */
import { createHash } from 'node:crypto';
import { Command } from 'commander';
import { createLogger } from '../../common/logger.js';
import { loadDataset } from '../../training/data/index.js';
import { BACKEND_CHOICES, selectBackend } from '../../training/backends/select.js';
import { getModel, modelNames } from '../../training/models/zoo.js';
import { DEFAULT_ADAM } from '../../training/optimizer/adam.js';
import { trainLocal } from '../../training/train-local.js';
import { nonNegativeInt, oneOf, positiveInt, positiveNumber, printJson } from '../options.js';
import { type Progress, createProgress } from '../progress.js';

interface TrainOptions {
  model: string; epochs: number; batchSize: number; lr: number; seed: number; maxSteps?: number;
  backend: (typeof BACKEND_CHOICES)[number]; train: string; test: string; json?: boolean;
}

export function weightsSha256(weights: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength)).digest('hex');
}

export function trainCommand(): Command {
  return new Command('train')
    .description('train a model and evaluate it on the test set')
    .option('--model <name>', `model (${modelNames().join(', ')})`, 'mnist-cnn')
    .option('--epochs <n>', 'epochs', positiveInt, 1)
    .option('--batch-size <n>', 'samples per step', positiveInt, 64)
    .option('--lr <rate>', 'Adam learning rate', positiveNumber, DEFAULT_ADAM.learningRate)
    .option('--seed <n>', 'seed for initial weights, shuffles and dropout', nonNegativeInt, 1)
    .option('--max-steps <n>', 'stop after this many steps', positiveInt)
    .option('--backend <name>', `compute backend (${BACKEND_CHOICES.join(', ')})`, oneOf(BACKEND_CHOICES), 'auto')
    .option('--train <data>', 'training data: mnist:train, a Kaggle train.csv, or an IDX images file', 'mnist:train')
    .option('--test <data>', 'test data (labelled)', 'mnist:test')
    .option('--json', 'print a JSON summary as the last stdout line')
    .action(async (opts: TrainOptions) => {
      const log = createLogger('train');
      const model = getModel(opts.model);
      const train = loadDataset(opts.train);
      const test = loadDataset(opts.test);
      const backend = await selectBackend(opts.backend, log);
      log.info({ model: model.name, train: train.count, test: test.count, epochs: opts.epochs, batchSize: opts.batchSize }, 'training');
      const started = performance.now();
      // A bar per epoch, opened by that epoch's first step (so none is left empty after the last).
      let progress: Progress | undefined;
      const result = trainLocal({
        model, train, test, epochs: opts.epochs, batchSize: opts.batchSize, seed: opts.seed, maxSteps: opts.maxSteps,
        adam: { ...DEFAULT_ADAM, learningRate: opts.lr },
        onStep: (s) => {
          if (s.stepInEpoch === 0) progress = createProgress(log, `epoch ${s.epoch + 1}`, s.stepsPerEpoch, 'steps');
          progress?.update(s.stepInEpoch + 1, { loss: s.loss.toFixed(4) });
        },
        onEpoch: (e) => {
          progress?.stop();
          log.info({ epoch: e.epoch + 1, train_loss: e.trainLoss, train_accuracy: e.trainAccuracy, test_loss: e.test?.loss, test_accuracy: e.test?.accuracy },
            `epoch ${e.epoch + 1}: test accuracy ${((e.test?.accuracy ?? 0) * 100).toFixed(2)}%`);
        },
      });
      const wallS = (performance.now() - started) / 1000;
      const last = result.history.at(-1);
      const summary = {
        model: model.name, backend: backend.name, workers: 1, transport: 'in-process', steps: result.steps, epochs: result.history.length,
        samples: result.samples, wall_s: wallS, samples_per_s: result.samples / wallS, test_accuracy: last?.test?.accuracy ?? null, test_loss: last?.test?.loss ?? null,
        weights_sha256: weightsSha256(result.weights), checkpoint: null,
      };
      if (opts.json) printJson(summary);
      else log.info(summary, 'done');
    });
}
