/**
 * `gradfleet eval` and `gradfleet predict`: use a run's checkpoint on labelled or unlabelled data. With the
 * run's secret the checkpoint's signature is verified; a checkpoint is never trusted to name files to open
 * outside its run directory unless it verifies.
 */
import { join } from 'node:path';
import Table from 'cli-table3';
import { tableStyle } from '../../common/colour.js';
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { type Logger, createLogger } from '../../common/logger.js';
import { CheckpointKey } from '../../coordinator/checkpoint-file.js';
import {
  type LoadedRun,
  dataSpecOf,
  loadRunState,
  runDirOf,
  writeConfusion,
} from '../../coordinator/run-outputs.js';
import { BACKEND_CHOICES, type BackendChoice, selectBackend } from '../../training/backends/select.js';
import { loadDataset, writeSubmission } from '../../training/data/index.js';
import { getModel } from '../../training/models/zoo.js';
import { evaluate, predict } from '../../training/step/evaluate.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { oneOf, printJson } from '../options.js';
import { type SecretFlags, addSecretOptions, secretOf } from '../secret-options.js';

interface ModelFlags extends SecretFlags {
  checkpoint: string;
  backend: BackendChoice;
  json?: boolean;
}

/** The checkpoint, its signature verified with the secret when one is given. */
function loadRun(flags: ModelFlags, log: Logger): Promise<LoadedRun> {
  const secret = secretOf(flags);
  return loadRunState(flags.checkpoint, log, { key: secret && CheckpointKey.fromSecret(secret) });
}

async function runnerOf(run: LoadedRun, flags: ModelFlags, log: Logger): Promise<ModelRunner> {
  const { state, path } = run;
  await selectBackend(flags.backend, log);
  const runner = new ModelRunner(getModel(state.config.model));
  runner.setWeights(state.weights);
  log.info(
    { checkpoint: path, model: state.config.model, step: state.step },
    `loaded ${state.config.model} at step ${state.step} from ${path}`,
  );
  return runner;
}

const withModelOptions = (cmd: Command) =>
  addSecretOptions(
    cmd
      .requiredOption('--checkpoint <path>', 'run directory, checkpoints directory, or one .gfck file')
      .option(
        '--backend <name>',
        `compute backend (${BACKEND_CHOICES.join(', ')})`,
        oneOf(BACKEND_CHOICES),
        'auto',
      )
      .option('--json', 'print the result as JSON on the last stdout line'),
    "the run's checkpoints were signed with, to verify the checkpoint",
  );

/**
 * train names its labelled test data --test, eval names it --data: the mistake is said at once, with the
 * flag to use (a hidden --test that refuses itself; commander suggests only flags that look alike).
 */
const refusedTestFlag = () =>
  new Option('--test <data>').hideHelp().argParser((value: string) => {
    throw new UsageError(
      `eval takes its labelled data as --data, not --test: gradfleet eval --data ${value} …`,
    );
  });

export function evalCommand(): Command {
  return withModelOptions(
    new Command('eval').description(
      'loss, accuracy, per-class accuracy and confusion matrix of a checkpoint',
    ),
  )
    .option('--data <data>', "labelled data (default: the run's test set)")
    .addOption(refusedTestFlag())
    .option('--confusion <svg>', 'where to draw the confusion matrix (default: <run dir>/confusion-eval.svg)')
    .action(async (flags: ModelFlags & { data?: string; confusion?: string }) => {
      const log = createLogger('eval');
      const run = await loadRun(flags, log);
      const { state, path } = run;
      const spec = flags.data ?? state.config.test.spec;
      if (flags.data === undefined) {
        const verdict = dataSpecOf(run, spec);
        if (!verdict.ok)
          throw new UsageError(
            `${verdict.why}: name the test data with --data FILE${run.signature.state === 'unverified' ? ", or give the run's secret" : ''}`,
          );
      }
      const data = loadDataset(spec);
      const runner = await runnerOf(run, flags, log);
      const result = await evaluate(runner, data);
      runner.dispose();
      const picture = flags.confusion ?? join(runDirOf(flags.checkpoint), 'confusion-eval.svg');
      await writeConfusion(picture, result, `${state.config.model} step ${state.step} on ${spec}`);
      if (flags.json) return printJson({ checkpoint: path, data: spec, ...result, confusion_svg: picture });
      const classes = new Table({
        style: tableStyle(),
        head: ['true \\ predicted', ...result.confusion.map((_, i) => String(i)), 'accuracy'],
      });
      result.confusion.forEach((row, i) =>
        classes.push([String(i), ...row.map(String), `${(result.perClassAccuracy[i] * 100).toFixed(2)}%`]),
      );
      process.stdout.write(
        `${spec}: ${result.count} samples, loss ${result.loss.toFixed(4)}, accuracy ${(result.accuracy * 100).toFixed(2)}%\n${classes.toString()}\nconfusion matrix drawn in ${picture}\n`,
      );
    });
}

export function predictCommand(): Command {
  return withModelOptions(
    new Command('predict').description('predict labels and write a Kaggle submission.csv (ImageId,Label)'),
  )
    .requiredOption('--input <file>', 'Kaggle test.csv, or an IDX images file')
    .option('--out <file>', 'submission file', 'submission.csv')
    .action(async (flags: ModelFlags & { input: string; out: string }) => {
      const log = createLogger('predict');
      const data = loadDataset(flags.input);
      const runner = await runnerOf(await loadRun(flags, log), flags, log);
      const labels = await predict(runner, data);
      runner.dispose();
      writeSubmission(flags.out, labels);
      if (flags.json) printJson({ input: flags.input, out: flags.out, rows: labels.length });
      else
        log.info(
          { out: flags.out, rows: labels.length },
          `wrote ${labels.length} predictions to ${flags.out}`,
        );
    });
}
