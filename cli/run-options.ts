/** The flags that define a training run, shared by `gradfleet train` and `gradfleet coordinator`. */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CHECKPOINT_FILE_PATTERN } from '../coordinator/checkpoint-store.js';
import type { Command } from 'commander';
import type { NewRunConfig, RunStart, RunSummary } from '../coordinator/launch.js';
import type { CoordinatorHooks } from '../coordinator/hooks.js';
import {
  STEP_DONE_MSG,
  STEP_GATHERED_MSG,
  stepDoneFields,
  stepGatheredFields,
} from '../coordinator/step-log.js';
import type { Logger } from '../common/logger.js';
import { modelNames } from '../training/models/zoo.js';
import { DEFAULT_ADAM } from '../training/optimizer/adam.js';
import { DEFAULT_OUTER } from '../training/optimizer/outer.js';
import {
  nonNegativeInt,
  port,
  positiveInt,
  positiveNumber,
  printJson,
  unitFraction,
  wireDtype,
} from './options.js';
import type { WireDtype } from '../protocol/wire-dtype.js';
import { type Progress, createProgress } from './progress.js';
import { stderrStatus } from '../common/status-line.js';
import { UsageError } from '../common/errors.js';
import { type RunDir, checkResumable, prepareRunDir, removeIfUnused, resumeHint } from './out-dir.js';

export interface RunFlags {
  model: string;
  epochs: number;
  batchSize: number;
  microBatch: number;
  lr: number;
  lrDecay: number;
  seed: number;
  maxSteps?: number;
  train: string;
  test: string;
  out?: string;
  resume?: string;
  autoResume?: boolean;
  host: string;
  port: number;
  evalChunk: number;
  maxFrameMb: number;
  maxGradNorm?: number;
  localSteps?: number;
  replicas?: number;
  outerLr: number;
  outerMomentum: number;
  wire: WireDtype;
  json?: boolean;
  curvesEvery: number;
  evalEvery: number;
}

export function addRunOptions(cmd: Command, defaultPort: number): Command {
  return cmd
    .option('--model <name>', `model (${modelNames().join(', ')})`, 'mnist-cnn')
    .option('--epochs <n>', 'epochs', positiveInt, 1)
    .option(
      '--batch-size <n>',
      "global batch: samples per step, over all workers (with --local-steps: each replica's inner batch)",
      positiveInt,
      128,
    )
    .option(
      '--micro-batch <n>',
      'samples per micro-batch (the unit of work and of the reduction tree)',
      positiveInt,
      32,
    )
    .option('--lr <rate>', 'Adam learning rate', positiveNumber, DEFAULT_ADAM.learningRate)
    .option('--lr-decay <factor>', 'multiply the learning rate by this after each epoch', unitFraction, 1)
    .option('--seed <n>', 'seed for initial weights, shuffles and dropout', nonNegativeInt, 1)
    .option('--max-steps <n>', 'stop once the run has taken this many steps in total', positiveInt)
    .option(
      '--train <data>',
      "training data: mnist:train, a Kaggle train.csv, or an IDX images file (with --resume: the run's own, named again)",
      'mnist:train',
    )
    .option('--test <data>', "test data (labelled; with --resume: the run's own, named again)", 'mnist:test')
    .option('--out <dir>', 'run directory: checkpoints, curves, exported model (default runs/<model>-<time>)')
    .option('--resume <dir>', 'continue the run in DIR from its newest valid checkpoint')
    .option(
      '--auto-resume',
      'continue the run in --out if it has a checkpoint, else start it (for restarted pods and services)',
    )
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', port, defaultPort)
    .option(
      '--max-grad-norm <x>',
      'clip the averaged gradient to this global L2 norm before Adam (off by default)',
      positiveNumber,
    )
    .option(
      '--local-steps <h>',
      'local steps (DiLoCo): each round, every replica takes H inner Adam steps from the global weights, then an outer Nesterov step applies their mean delta (off by default)',
      positiveInt,
    )
    .option(
      '--replicas <k>',
      'virtual replicas per round with --local-steps: part of the run config, like the batch size, so the result does not depend on how many workers compute them',
      positiveInt,
    )
    .option(
      '--outer-lr <rate>',
      'outer Nesterov learning rate with --local-steps',
      positiveNumber,
      DEFAULT_OUTER.learningRate,
    )
    .option(
      '--outer-momentum <m>',
      'outer Nesterov momentum with --local-steps',
      unitFraction,
      DEFAULT_OUTER.momentum,
    )
    .option('--eval-chunk <n>', 'test samples per evaluation work item', positiveInt, 500)
    .option(
      '--max-frame-mb <n>',
      'largest frame accepted from a worker, in MiB (bigger ones are rejected and counted)',
      positiveInt,
      64,
    )
    .option(
      '--wire <dtype>',
      'payload dtype of gradients and weights: fp32 (bit-identical for any worker count), fp16 or bf16 (half the bytes)',
      wireDtype,
      'f32',
    )
    .option(
      '--curves-every <steps>',
      'redraw curves.svg every N steps as well as after each epoch (0: epochs only)',
      nonNegativeInt,
      100,
    )
    .option(
      '--eval-every <steps>',
      "evaluate on the test set every N steps as well as after each epoch (0: epochs only); the summary's evaluations list them",
      nonNegativeInt,
      0,
    )
    .option('--json', 'print a JSON summary as the last stdout line');
}

/**
 * --local-steps and --replicas come together; a replica computes each inner batch whole (the micro-batch is
 * the batch), and the outer step has no gradient norm to clip.
 */
function localStepsConfigOf(cmd: Command, flags: RunFlags): NewRunConfig['localSteps'] {
  const pair = localStepsPair(flags);
  if (!pair) {
    const given = ['outerLr', 'outerMomentum'].filter((k) => cmd.getOptionValueSource(k) === 'cli');
    if (given.length > 0) throw new UsageError(`--${kebab(given[0])} needs --local-steps and --replicas`);
    return null;
  }
  if (cmd.getOptionValueSource('microBatch') === 'cli')
    throw new UsageError(
      '--micro-batch does not apply with --local-steps: each inner step computes its --batch-size samples whole',
    );
  if (flags.maxGradNorm !== undefined)
    throw new UsageError('--max-grad-norm does not apply with --local-steps: the outer step applies deltas');
  return { ...pair, outer: { learningRate: flags.outerLr, momentum: flags.outerMomentum } };
}

/** --local-steps H and --replicas K, both or neither (train, coordinator, bench scale). */
export function localStepsPair(flags: {
  localSteps?: number;
  replicas?: number;
}): { steps: number; replicas: number } | null {
  const { localSteps: steps, replicas } = flags;
  if (steps === undefined && replicas === undefined) return null;
  if (steps === undefined || replicas === undefined)
    throw new UsageError('--local-steps and --replicas go together: give both');
  return { steps, replicas };
}

const kebab = (flag: string): string => flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function runConfigOf(cmd: Command, flags: RunFlags): NewRunConfig {
  const localSteps = localStepsConfigOf(cmd, flags);
  return {
    model: flags.model,
    seed: flags.seed,
    batchSize: flags.batchSize,
    microBatchSize: localSteps ? flags.batchSize : flags.microBatch,
    localSteps,
    epochs: flags.epochs,
    maxSteps: flags.maxSteps ?? null,
    adam: { ...DEFAULT_ADAM, learningRate: flags.lr },
    lrDecay: flags.lrDecay,
    evalChunkSize: flags.evalChunk,
    maxGradNorm: flags.maxGradNorm ?? null,
    wire: flags.wire,
    train: flags.train,
    test: flags.test,
  };
}

/** Where the run writes: --out, else the resumed run's directory, else a fresh one under runs/. */
function outDirOf(flags: RunFlags): string {
  if (flags.out) return flags.out;
  if (flags.resume) return flags.resume;
  return join('runs', `${flags.model}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
}

/**
 * The run directory, made and proven writable before anything listens or loads (cli/out-dir.ts); removed
 * again at exit if the run leaves no checkpoint in a directory made for it.
 */
export async function runDirOf(flags: RunFlags): Promise<RunDir> {
  if (flags.resume && (await checkResumable(flags.resume)) === 'file' && !flags.out)
    throw new UsageError(
      `--resume ${flags.resume} is one checkpoint file: give --out DIR for the continued run's outputs`,
    );
  const dir = await prepareRunDir(
    outDirOf(flags),
    flags.out ? '--out' : flags.resume ? '--resume' : undefined,
  );
  removeIfUnused(dir);
  return dir;
}

/** A fresh run from the flags, or a resumed one (--resume, or --auto-resume where --out has checkpoints). */
export function runStartOf(cmd: Command, flags: RunFlags): RunStart {
  const resume = flags.autoResume ? autoResumeOf(cmd, flags) : resumeOf(cmd, flags);
  return resume ?? { kind: 'fresh', config: runConfigOf(cmd, flags) };
}

type Resume = Extract<RunStart, { kind: 'resume' }>;

/**
 * --train/--test given with a resume: the run's data named again (where the checkpoint's own names are not
 * followed, or the files moved); the fingerprints prove it is the same data.
 */
function dataNamedAgain(cmd: Command, flags: RunFlags): Resume['data'] {
  const explicit = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  if (!explicit('train') && !explicit('test')) return undefined;
  return {
    train: explicit('train') ? flags.train : undefined,
    test: explicit('test') ? flags.test : undefined,
  };
}

/**
 * When resuming, only the run's length may change, and its data be named again; flags given explicitly for
 * anything else are an error.
 */
function resumeOf(cmd: Command, flags: RunFlags): Resume | undefined {
  if (!flags.resume) return undefined;
  const fixed = [
    'model',
    'batchSize',
    'microBatch',
    'lr',
    'lrDecay',
    'seed',
    'wire',
    'maxGradNorm',
    'localSteps',
    'replicas',
    'outerLr',
    'outerMomentum',
  ];
  const changed = fixed.filter((k) => cmd.getOptionValueSource(k) === 'cli');
  if (changed.length > 0)
    throw new UsageError(
      `--resume continues a run with its own config; drop ${changed.map((k) => `--${kebab(k)}`).join(', ')}`,
    );
  const explicit = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  return {
    kind: 'resume',
    from: flags.resume,
    overrides: {
      epochs: explicit('epochs') ? flags.epochs : undefined,
      maxSteps: explicit('maxSteps') ? flags.maxSteps : undefined,
    },
    data: dataNamedAgain(cmd, flags),
  };
}

/**
 * --auto-resume: the same command line starts a run and, after a crash, continues it. The run's
 * own config wins when continuing, but for its data: --train/--test given name it (it must be the same
 * data); only a different model is refused, as certainly a mistake.
 */
function autoResumeOf(cmd: Command, flags: RunFlags): Resume | undefined {
  if (flags.resume) throw new UsageError('give --resume DIR or --auto-resume, not both');
  if (!flags.out)
    throw new UsageError(
      '--auto-resume needs --out DIR: the run directory to continue when it has checkpoints',
    );
  const dir = join(flags.out, 'checkpoints');
  const hasCheckpoint = existsSync(dir) && readdirSync(dir).some((f) => CHECKPOINT_FILE_PATTERN.test(f));
  if (!hasCheckpoint) return undefined;
  const explicit = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  return {
    kind: 'resume',
    from: flags.out,
    expectModel: flags.model,
    overrides: {
      epochs: explicit('epochs') ? flags.epochs : undefined,
      maxSteps: explicit('maxSteps') ? flags.maxSteps : undefined,
    },
    data: dataNamedAgain(cmd, flags),
  };
}

/** A bar per epoch (opened by its first step) on a TTY; structured logs otherwise. */
export function progressHooks(log: Logger): CoordinatorHooks {
  let progress: Progress | undefined;
  let done = 0;
  return {
    gathered: (position) => {
      if (log.isLevelEnabled('debug')) log.debug(stepGatheredFields(position), STEP_GATHERED_MSG);
    },
    step: (report) => {
      // Built only when written: this runs on every training step.
      if (log.isLevelEnabled('debug')) log.debug(stepDoneFields(report), STEP_DONE_MSG);
      const { position, samples, epochSamples, loss, seconds } = report;
      if (!progress || position.stepInEpoch === 0) {
        progress?.stop();
        done = position.stepInEpoch === 0 ? 0 : Math.min(epochSamples, position.stepInEpoch * samples);
        // Opened by a step's end: its rate starts where that step began, from the samples done before it
        // (a resumed run's earlier steps are not this process's speed).
        progress = createProgress(log, `epoch ${position.epoch + 1}`, epochSamples, 'samples', {
          from: done,
          sinceMs: seconds.total * 1000,
        });
      }
      done += samples;
      progress.update(done, { loss: loss.toFixed(4) });
    },
    epoch: () => {
      progress?.stop();
      progress = undefined;
    },
  };
}

/** The summary, last; an interrupted run's ends with how to go on (`command`: train or coordinator). */
export function report(summary: RunSummary, json: boolean | undefined, log: Logger, command: string): void {
  stderrStatus.keep(); // an interrupted epoch's bar stays where it stopped, above the summary
  const hint =
    summary.stopped === 'interrupted' && summary.checkpoint !== null
      ? `interrupted at step ${summary.steps}: ${resumeHint(command, summary.out)}`
      : undefined;
  if (json) {
    // stdout's last line stays the JSON; the hint goes to the log, before it.
    if (hint) log.info({ resume: summary.out }, hint);
    printJson(summary);
    return;
  }
  log.info(
    summary,
    `done: ${summary.steps} steps, test accuracy ${summary.test_accuracy === null ? 'n/a' : `${(summary.test_accuracy * 100).toFixed(2)}%`}, outputs in ${summary.out}`,
  );
  if (hint) log.info({ resume: summary.out }, hint);
}
