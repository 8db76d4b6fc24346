/** Inference over a labelled data set: loss, accuracy, per-class accuracy and the confusion matrix. */
import { type Dataset, normalizeInto } from '../data/index.js';
import { type ModelRunner, argmaxRows } from './model-runner.js';

export interface Evaluation {
  count: number;
  /** Mean cross-entropy. */
  loss: number;
  accuracy: number;
  /** confusion[true][predicted]. */
  confusion: number[][];
  perClassAccuracy: number[];
}

/** Cross-entropy of each row of logits against its label, computed stably (log-sum-exp). */
export function crossEntropySum(logits: Float32Array, labels: Uint8Array, classes: number): number {
  let total = 0;
  for (let r = 0; r < labels.length; r++) {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    total += max + Math.log(sum) - row[labels[r]];
  }
  return total;
}

/**
 * Runs `fn` over samples [from, to) of the data set (all by default) in batches of consecutive
 * samples, with normalised pixels.
 */
export async function forEachBatch(
  data: Dataset,
  batchSize: number,
  fn: (images: Float32Array, start: number, count: number) => void | Promise<void>,
  from = 0,
  to = data.count,
): Promise<void> {
  const buffer = new Float32Array(batchSize * data.pixelsPerImage);
  const indices = new Uint32Array(batchSize);
  for (let start = from; start < to; start += batchSize) {
    const count = Math.min(batchSize, to - start);
    for (let i = 0; i < count; i++) indices[i] = start + i;
    await fn(normalizeInto(data, indices.subarray(0, count), buffer), start, count);
  }
}

export async function predict(runner: ModelRunner, data: Dataset, batchSize = 500): Promise<Uint8Array> {
  const out = new Uint8Array(data.count);
  await forEachBatch(data, batchSize, async (images, start, count) => {
    out.set(argmaxRows(await runner.logits(images, count), runner.model.classes), start);
  });
  return out;
}

export async function evaluate(runner: ModelRunner, data: Dataset, batchSize = 500): Promise<Evaluation> {
  const labels = data.labels;
  if (!labels) throw new Error(`evaluate: ${data.name} has no labels`);
  const classes = runner.model.classes;
  const confusion = emptyConfusion(classes);
  let lossSum = 0;
  await forEachBatch(data, batchSize, async (images, start, count) => {
    const logits = await runner.logits(images, count);
    const batchLabels = labels.subarray(start, start + count);
    lossSum += crossEntropySum(logits, batchLabels, classes);
    argmaxRows(logits, classes).forEach((p, i) => confusion[batchLabels[i]][p]++);
  });
  return evaluationOf(confusion, lossSum);
}

export function emptyConfusion(classes: number): number[][] {
  return Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
}

/** The summary of a confusion matrix (confusion[true][predicted]) and the summed loss. */
export function evaluationOf(confusion: number[][], lossSum: number): Evaluation {
  const count = confusion.reduce((s, row) => s + row.reduce((a, b) => a + b, 0), 0);
  const correct = confusion.reduce((s, row, i) => s + row[i], 0);
  return {
    count,
    loss: lossSum / count,
    accuracy: correct / count,
    confusion,
    perClassAccuracy: confusion.map(
      (row, i) =>
        row[i] /
        Math.max(
          1,
          row.reduce((a, b) => a + b, 0),
        ),
    ),
  };
}
