/** What a run leaves in its directory besides checkpoints: pictures, the exported model, the summary. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../common/write-atomic.js';
import { writeTfjsModel } from '../training/export/tfjs-layers.js';
import type { ModelSpec } from '../training/models/spec.js';
import { renderConfusionMatrix, renderTrainingCurves, writeSvg } from '../training/report/index.js';
import type { Evaluation } from '../training/step/evaluate.js';
import { resolveCheckpoint } from './checkpoint-store.js';
import { type RunState, stateFromCheckpoint } from './run-state.js';

export const runPaths = (outDir: string) => ({
  checkpoints: join(outDir, 'checkpoints'),
  curves: join(outDir, 'curves.svg'),
  confusion: join(outDir, 'confusion.svg'),
  model: join(outDir, 'model'),
  summary: join(outDir, 'summary.json'),
});

/** curves.svg: the loss of every step so far, and loss and accuracy per finished epoch. */
export async function writeCurves(
  outDir: string,
  state: Pick<RunState, 'config' | 'history' | 'stepLosses'>,
): Promise<void> {
  if (state.history.length === 0 && state.stepLosses.length === 0) return;
  const svg = renderTrainingCurves(
    state.history.map((h) => ({
      epoch: h.epoch,
      trainLoss: h.trainLoss,
      trainAccuracy: h.trainAccuracy,
      testLoss: h.testLoss ?? undefined,
      testAccuracy: h.testAccuracy ?? undefined,
    })),
    {
      title: `${state.config.model}: loss per step, loss and accuracy per epoch`,
      steps: state.stepLosses.map((loss, i) => ({ step: i + 1, loss })),
    },
  );
  await writeSvg(runPaths(outDir).curves, svg);
}

export async function writeConfusion(path: string, evaluation: Evaluation, title: string): Promise<void> {
  await writeSvg(path, renderConfusionMatrix(evaluation.confusion, { title }));
}

export async function exportModel(
  outDir: string,
  model: ModelSpec,
  weights: Float32Array,
  log: Logger,
): Promise<string> {
  const { modelJson } = await writeTfjsModel(runPaths(outDir).model, model, weights);
  log.info({ path: modelJson }, `exported the model for tf.loadLayersModel: ${modelJson}`);
  return modelJson;
}

export async function writeSummary(outDir: string, summary: object): Promise<void> {
  await writeFileAtomic(runPaths(outDir).summary, `${JSON.stringify(summary, null, 2)}\n`);
}

/**
 * A run's newest valid checkpoint, from its run directory (DIR/checkpoints), a checkpoints
 * directory or one checkpoint file.
 */
export async function loadRunState(
  pathOrDir: string,
  log?: Logger,
): Promise<{ state: RunState; path: string }> {
  const inRun = runPaths(pathOrDir).checkpoints;
  const loaded = await resolveCheckpoint(existsSync(inRun) ? inRun : pathOrDir, log);
  return { state: stateFromCheckpoint(loaded.meta, loaded.tensors, loaded.path), path: loaded.path };
}
