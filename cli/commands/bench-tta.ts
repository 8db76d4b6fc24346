/**
 * `gradfleet bench tta`: time to accuracy per training mode, from real training on the embedded cluster and
 * step times on the simulated cluster (bench/tta.ts).
 */
import { readFileSync } from 'node:fs';
import Table from 'cli-table3';
import { Command, InvalidArgumentError, Option } from 'commander';
import { SCALE_SHARDINGS, type ScaleSharding } from '../../bench/scale.js';
import { type TtaMode, type TtaReport, benchmarkTta, parseTtaMode } from '../../bench/tta.js';
import { tableStyle } from '../../common/colour.js';
import { createLogger } from '../../common/logger.js';
import { DEFAULT_ADAM } from '../../training/optimizer/adam.js';
import { getModel, modelNames } from '../../training/models/zoo.js';
import {
  collect,
  nonNegativeInt,
  oneOf,
  positiveInt,
  positiveNumber,
  printJson,
  share,
  unitFraction,
} from '../options.js';

interface TtaFlags {
  model: string;
  target?: number;
  modes: TtaMode[];
  replicas: number;
  innerBatch: number;
  lr: number;
  lrDecay: number;
  epochs: number;
  seed: number;
  evalEverySamples: number;
  train: string;
  test: string;
  workers: number;
  backend: string;
  hardware: boolean;
  machines: number;
  linkMbit: number;
  syntheticMs: number;
  scaleSteps: number;
  scaleWarmup: number;
  shards: ScaleSharding;
  json?: boolean;
  statistics: string[];
}

/** The accuracy each reference model is published at (training/models/zoo.ts). */
const PUBLISHED_TARGET: Record<string, number> = { 'mnist-small': 0.99, 'mnist-cnn': 0.994 };

function modes(value: string): TtaMode[] {
  const names = value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  const parsed = names.map((n) => [n, parseTtaMode(n)] as const);
  const bad = parsed.find(([, m]) => m === undefined);
  if (names.length === 0 || bad)
    throw new InvalidArgumentError(
      `expected a comma-separated list of sync, local-H, each optionally -bf16 or -fp16 (e.g. sync,sync-bf16,local-16)${bad ? `; not ${bad[0]}` : ''}`,
    );
  return parsed.map(([, m]) => m!);
}

const pct = (x: number | null, digits = 2) => (x === null ? '–' : `${(100 * x).toFixed(digits)}%`);
const num = (x: number | null, digits = 0) => (x === null ? '–' : x.toFixed(digits));

function formatTtaReport(r: TtaReport): string {
  const hw = r.hardware;
  const table = new Table({
    style: tableStyle(),
    head: [
      'mode',
      'samples/step',
      `steps to ${pct(r.target, 1)}`,
      'samples to it',
      `accuracy after ${r.rows[0]?.final_samples ?? 0} samples`,
      ...(hw
        ? [
            `ms/step on ${hw.machines}`,
            'efficiency',
            'busiest link',
            'CPU busy',
            'time to accuracy',
            'vs one machine',
          ]
        : []),
    ],
  });
  for (const row of r.rows)
    table.push([
      row.mode,
      String(row.samples_per_step),
      row.steps_to_target === null ? `not reached (every ${row.eval_every_steps})` : `${row.steps_to_target}`,
      num(row.samples_to_target),
      pct(row.final_accuracy),
      ...(hw
        ? [
            num(row.step_ms),
            pct(row.efficiency, 0),
            row.busiest_x_model === null ? '–' : `${row.busiest_x_model.toFixed(2)}×`,
            pct(row.cpu_busy, 0),
            row.tta_s === null ? '–' : `${row.tta_s.toFixed(1)} s`,
            row.speedup === null ? '–' : `${row.speedup.toFixed(2)}×`,
          ]
        : []),
    ]);
  const one = r.one_machine;
  return (
    `${r.model} to ${pct(r.target, 1)} test accuracy: K = ${r.replicas} (replicas of a round; micro-batches of a synchronous step), inner batch ${r.inner_batch}, ` +
    `Adam ${r.lr} × ${r.lr_decay}^epoch, ${r.epochs} epoch(s) per mode on ${r.workers} worker(s), seed ${r.seed}.\n` +
    `${table.toString()}\n` +
    'steps to it: the first evaluation (every eval_every steps, about the same samples in every mode) at or above the target; a local step is a round. ' +
    (hw
      ? `ms/step: bench scale, ${hw.machines} machines on ${hw.linkMbit} Mbit/s links, each micro-batch (inner batch) computing in ${hw.syntheticMs} ms, ` +
        `shards ${hw.sharding === 'N' ? 'N (one per machine)' : 'none (the coordinator)'}, ${hw.steps} measured steps after ${hw.warmup}. time to accuracy = steps to it × ms/step. ` +
        (one
          ? `One machine, no network: ${one.steps} synchronous steps × ${one.step_ms} ms (${r.replicas} micro-batches) = ${one.seconds.toFixed(1)} s; vs one machine = that ÷ time to accuracy.\n`
          : 'One machine: – (the synchronous fp32 mode did not reach the target, or was not run).\n')
      : 'No simulated cluster (--no-hardware): statistical efficiency only.\n')
  );
}

export function ttaCommand(): Command {
  return new Command('tta')
    .description(
      'time to accuracy per training mode (synchronous, bf16, local steps): steps to a target test accuracy from real training, ' +
        'times the step time on the simulated cluster (root), against one machine',
    )
    .option('--model <name>', `model (${modelNames().join(', ')})`, 'mnist-small')
    .option(
      '--target <accuracy>',
      'test accuracy to reach (default: the model’s published one, mnist-small 0.99, mnist-cnn 0.994)',
      share,
    )
    .addOption(
      new Option('--modes <list>', 'modes, in order: sync, local-H, each optionally -bf16 or -fp16')
        .argParser(modes)
        .default(
          modes('sync,sync-bf16,local-4,local-16,local-64'),
          'sync,sync-bf16,local-4,local-16,local-64',
        ),
    )
    .option(
      '--replicas <k>',
      'K: replicas of a round, and micro-batches of a synchronous step',
      positiveInt,
      8,
    )
    .option('--inner-batch <n>', 'samples per micro-batch (sync) and per inner step (local)', positiveInt, 16)
    .option(
      '--lr <rate>',
      'Adam learning rate (the inner one with local steps)',
      positiveNumber,
      DEFAULT_ADAM.learningRate,
    )
    .option('--lr-decay <factor>', 'per-epoch learning-rate decay', unitFraction, 1)
    .option('--epochs <n>', 'epochs every mode trains (the same samples)', positiveInt, 5)
    .option('--seed <n>', 'seed of every run', nonNegativeInt, 1)
    .option('--eval-every-samples <n>', 'evaluate about every this many samples', positiveInt, 8192)
    .option('--train <data>', 'training data (as for train)', 'mnist:train')
    .option('--test <data>', 'labelled test data the target is measured on', 'mnist:test')
    .option(
      '--workers <n>',
      'worker processes of the training runs (the result does not depend on it)',
      positiveInt,
      2,
    )
    .option('--backend <name>', "the training runs' worker backend", 'auto')
    .option('--no-hardware', 'skip the simulated cluster (no root needed): steps to accuracy only')
    .option('--machines <n>', 'simulated machines, one worker each', positiveInt, 8)
    .option('--link-mbit <n>', "every simulated machine's link rate, Mbit/s", positiveNumber, 100)
    .option(
      '--synthetic-ms <ms>',
      'compute time of a micro-batch (inner batch) on the simulated cluster: a GPU-class figure scaled with the link',
      positiveNumber,
      100,
    )
    .option('--scale-steps <n>', 'measured steps (rounds) per mode on the simulated cluster', positiveInt, 3)
    .option('--scale-warmup <n>', 'steps (rounds) before those', positiveInt, 1)
    .addOption(
      new Option(
        '--shards <where>',
        'where reduce and the optimizer run on the simulated cluster: none, or N (one per machine)',
      )
        .argParser(oneOf(SCALE_SHARDINGS))
        .default('N'),
    )
    .option(
      '--statistics <report.json>',
      "an earlier `bench tta --json` report of the same runs (repeatable): its modes' steps to accuracy are reused (training gives the same bits however fast it runs), only the simulated cluster is measured again",
      collect,
      [],
    )
    .option('--json', 'print the report as one JSON object')
    .action(async (flags: TtaFlags) => {
      const log = createLogger('bench');
      const report = await benchmarkTta({
        model: getModel(flags.model).name,
        modes: flags.modes,
        target: flags.target ?? PUBLISHED_TARGET[flags.model] ?? 0.99,
        replicas: flags.replicas,
        innerBatch: flags.innerBatch,
        lr: flags.lr,
        lrDecay: flags.lrDecay,
        epochs: flags.epochs,
        seed: flags.seed,
        evalEverySamples: flags.evalEverySamples,
        data: { train: flags.train, test: flags.test },
        workers: flags.workers,
        backend: flags.backend,
        hardware: flags.hardware
          ? {
              machines: flags.machines,
              linkMbit: flags.linkMbit,
              syntheticMs: flags.syntheticMs,
              steps: flags.scaleSteps,
              warmup: flags.scaleWarmup,
              sharding: flags.shards,
            }
          : null,
        statistics: flags.statistics.map((file) => JSON.parse(readFileSync(file, 'utf8')) as TtaReport),
        onRun: (what) => log.info(what),
      });
      if (flags.json) printJson(report);
      else process.stdout.write(formatTtaReport(report));
    });
}
