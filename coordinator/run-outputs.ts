/** What a run leaves in its directory besides checkpoints: pictures, the exported model, the summary. */
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import { resolvesInside } from '../common/paths.js';
import { writeFileAtomic } from '../common/write-atomic.js';
import { writeTfjsModel } from '../training/export/tfjs-layers.js';
import type { ModelSpec } from '../training/models/spec.js';
import { renderConfusionMatrix, renderTrainingCurves, writeSvg } from '../training/report/index.js';
import type { Evaluation } from '../training/step/evaluate.js';
import type { CheckpointKey, CheckpointSignature } from './checkpoint-file.js';
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

/** A run's state as a checkpoint holds it, with where it came from and who vouches for it. */
export interface LoadedRun {
  state: RunState;
  path: string;
  /** The run directory the checkpoint lies in: the files it names are judged against it (dataSpecOf). */
  runDir: string;
  signature: CheckpointSignature;
}

/** The run directory of a checkpoint argument: a run directory, its checkpoints/ directory, or a file in it. */
export function runDirOf(pathOrDir: string): string {
  if (existsSync(runPaths(pathOrDir).checkpoints)) return pathOrDir;
  const dir = basename(pathOrDir) === 'checkpoints' ? pathOrDir : dirname(pathOrDir);
  return basename(dir) === 'checkpoints' ? dirname(dir) : dir;
}

/**
 * A run's newest valid checkpoint, from its run directory (DIR/checkpoints), a checkpoints
 * directory or one checkpoint file. `key`: what its signature must verify with (from the secret given;
 * default: the key a running run bound to the directory). With `log`, says who vouches for it: verified,
 * unsigned (a WARN when a key was given), or signed and not checked (a WARN: no secret given).
 */
export async function loadRunState(
  pathOrDir: string,
  log?: Logger,
  options: { key?: CheckpointKey } = {},
): Promise<LoadedRun> {
  const inRun = runPaths(pathOrDir).checkpoints;
  const loaded = await resolveCheckpoint(existsSync(inRun) ? inRun : pathOrDir, log, options);
  const { path, signature } = loaded;
  if (log) reportSignature(log, path, signature);
  return {
    state: stateFromCheckpoint(loaded.meta, loaded.tensors, path),
    path,
    runDir: runDirOf(pathOrDir),
    signature,
  };
}

function reportSignature(log: Logger, path: string, signature: CheckpointSignature): void {
  switch (signature.state) {
    case 'verified':
      return log.info({ checkpoint: path, signature: 'verified' }, `checkpoint ${path}: signature verified`);
    case 'unsigned':
      if (signature.keyGiven)
        return log.warn(
          { checkpoint: path, signature: 'unsigned' },
          `checkpoint ${path} is unsigned (written without a secret, or before checkpoints were signed): nothing proves who wrote it`,
        );
      return log.info({ checkpoint: path, signature: 'unsigned' }, `checkpoint ${path} is unsigned`);
    case 'unverified':
      return log.warn(
        { checkpoint: path, signature: 'unverified', key: signature.key },
        `checkpoint ${path} is signed, but no secret was given to verify it: give the run's secret (--secret-file or GRADFLEET_SECRET)`,
      );
    default:
      return unreachable(signature, 'checkpoint signature');
  }
}

/**
 * Whether a data set that a loaded checkpoint names may be opened. The names are the checkpoint's
 * writer's word: an unsigned checkpoint could name any file of this machine (a key, a device), so its
 * files are opened only inside its own run directory (links resolved). A built-in set (mnist:*) is
 * always fine, and so is any file named by a checkpoint verified with the secret given (written by a
 * run that held it). Refused: `why`, naming the file, for a message that says which flag names the data.
 */
export function dataSpecOf(
  run: Pick<LoadedRun, 'runDir' | 'signature'>,
  spec: string,
): { ok: true } | { ok: false; why: string } {
  if (spec.startsWith('mnist:')) return { ok: true };
  if (run.signature.state === 'verified' || resolvesInside(spec, run.runDir)) return { ok: true };
  const trust =
    run.signature.state === 'unsigned'
      ? 'it is unsigned'
      : 'its signature was not checked (no secret was given)';
  return {
    ok: false,
    why: `the checkpoint names ${spec}, outside its run directory ${run.runDir}, and ${trust}: its paths are not followed`,
  };
}
