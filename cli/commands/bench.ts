/**
 * `gradfleet bench compute`: training-step and layer-kernel throughput per model, backend and thread count.
 * `gradfleet bench wire`: frame size, encode/decode time and precision per payload dtype.
 * `gradfleet bench cluster`: steady-state throughput of the embedded cluster per model and worker count.
 * `gradfleet bench scale`: the data plane on a simulated cluster of machines (bench-scale.ts).
 */
import Table from 'cli-table3';
import { tableStyle } from '../../common/colour.js';
import { Command } from 'commander';
import { benchmarkCluster } from '../../bench/cluster.js';
import {
  benchmarkConvLayers,
  benchmarkDenseLayers,
  benchmarkStep,
  profileStep,
} from '../../bench/compute.js';
import { benchmarkFanOut, benchmarkTransports } from '../../bench/transport.js';
import { benchmarkWire } from '../../bench/wire.js';
import { createLogger } from '../../common/logger.js';
import { BACKEND_CHOICES, type BackendChoice, selectBackend } from '../../training/backends/select.js';
import { getModel, modelNames } from '../../training/models/zoo.js';
import {
  nonNegativeInt,
  nonNegativeNumber,
  oneOf,
  positiveInt,
  positiveIntList,
  printJson,
  share,
} from '../options.js';
import { createProgress } from '../progress.js';
import { adaptersCommand, agreementCommand } from './bench-gpu.js';
import { floorCommand } from './bench-floor.js';
import { ttaCommand } from './bench-tta.js';
import { scaleCommand } from './bench-scale.js';

const fixed = (digits: number) => (v: number) => v.toFixed(digits);

const DEFAULT_CLUSTER_MODELS = ['mnist-cnn', 'mnist-small'];
const DEFAULT_CLUSTER_WORKERS = [1, 2];

/**
 * A variadic positive-integer option: the values given replace the default (as commander does for strings).
 */
const DEFAULT_CLUSTER_SHARDS = [1];

function positiveInts(defaults: number[]) {
  return (value: string, previous: number[]) => [
    ...(previous === defaults ? [] : previous),
    positiveInt(value),
  ];
}

export function benchCommand(): Command {
  const bench = new Command('bench').description(
    'benchmarks (run them alone: on 2 cores anything else halves the figure)',
  );
  bench
    .command('compute')
    .description(
      'training-step throughput, per-layer kernel GFLOP/s and (--profile) per-kernel time per model and backend',
    )
    .option('--model <name...>', `models to run (${modelNames().join(', ')})`, modelNames())
    .option('--backend <name...>', 'backends to run', ['auto'])
    .option(
      '--threads <n,…>',
      'oneDNN threads of the native backend, one run per value (e.g. 1,2)',
      positiveIntList,
      [1],
    )
    .option('--batch <n>', 'micro-batch size', positiveInt, 64)
    .option('--steps <n>', 'timed steps (median reported)', positiveInt, 10)
    .option('--conv-repeats <n>', 'timed calls per layer kernel', positiveInt, 5)
    .option('--profile', "also print where one step's time goes, per kernel")
    .option('--json', 'print one JSON object per model and backend; the last stdout line is the last one')
    .action(
      async (opts: {
        model: string[];
        backend: string[];
        threads: number[];
        batch: number;
        steps: number;
        convRepeats: number;
        profile?: boolean;
        json?: boolean;
      }) => {
        const log = createLogger('bench');
        const models = opts.model.map(getModel);
        const backends = opts.backend.map(oneOf(BACKEND_CHOICES)) as BackendChoice[];
        const steps = new Table({
          style: tableStyle(),
          head: ['model', 'backend', 'threads', 'batch', 'ms/step', 'samples/s', 'GFLOP/s'],
        });
        const profiles = new Table({
          style: tableStyle(),
          head: ['model', 'backend', 'threads', 'kernel', 'calls', 'ms', 'share'],
        });
        const layerTable = new Table({
          style: tableStyle(),
          head: [
            'model',
            'backend',
            'threads',
            'layer',
            'shape',
            'forward GFLOP/s',
            'input-grad GFLOP/s',
            'weight-grad GFLOP/s',
          ],
        });
        for (const choice of backends) {
          for (const [i, threads] of opts.threads.entries()) {
            const selected = await selectBackend(choice, log, { threads });
            // Thread counts only change the native backend: the others run once.
            if (selected.threads === undefined && i > 0) break;
            const backend = selected.name;
            const shownThreads = selected.threads ?? '-';
            for (const model of models) {
              const progress = createProgress(log, `${model.name} on ${backend}`, opts.steps, 'steps');
              const step = await benchmarkStep(model, opts.batch, opts.steps, (n) => progress.update(n + 1));
              progress.stop();
              const convLayers = await benchmarkConvLayers(model, opts.batch, opts.convRepeats);
              const denseLayers = await benchmarkDenseLayers(model, opts.batch, opts.convRepeats);
              steps.push([
                model.name,
                backend,
                shownThreads,
                opts.batch,
                fixed(1)(step.ms_per_step),
                fixed(0)(step.samples_per_s),
                fixed(2)(step.gflops),
              ]);
              for (const l of [...convLayers, ...denseLayers]) {
                layerTable.push([
                  model.name,
                  backend,
                  shownThreads,
                  l.layer,
                  l.shape,
                  ...[l.forward_gflops, l.input_grad_gflops, l.filter_grad_gflops].map(fixed(1)),
                ]);
              }
              const profile = opts.profile ? await profileStep(model, opts.batch) : [];
              const total = profile.reduce((a, r) => a + r.ms, 0);
              for (const r of profile.slice(0, 12)) {
                profiles.push([
                  model.name,
                  backend,
                  shownThreads,
                  r.kernel,
                  r.calls,
                  fixed(1)(r.ms),
                  `${fixed(0)((100 * r.ms) / total)}%`,
                ]);
              }
              if (opts.json)
                printJson({
                  ...step,
                  backend,
                  threads: selected.threads ?? null,
                  conv_layers: convLayers,
                  dense_layers: denseLayers,
                  ...(opts.profile ? { profile } : {}),
                });
            }
          }
        }
        if (opts.json) return;
        process.stdout.write(
          `Training step (one process):\n${steps.toString()}\n\nLayer kernels at the step's shapes (conv: forward, input and filter gradients; dense: x·W, dy·Wᵀ, xᵀ·dy):\n${layerTable.toString()}\n`,
        );
        if (opts.profile)
          process.stdout.write(`\nWhere one step's kernel time goes (top 12):\n${profiles.toString()}\n`);
      },
    );
  bench
    .command('wire')
    .description(
      'frame bytes, encode/decode ms and max relative error of a weights frame per payload dtype (f32, f16, bf16)',
    )
    .option('--values <n>', "payload values (default: mnist-large's parameter count)", positiveInt, 3_488_874)
    .option('--reps <n>', 'timed encode/decode pairs per dtype (median reported)', positiveInt, 5)
    .option('--json', 'print one JSON object per dtype')
    .action((opts: { values: number; reps: number; json?: boolean }) => {
      const rows = benchmarkWire(opts.values, opts.reps);
      if (opts.json) {
        for (const row of rows) printJson({ values: opts.values, ...row });
        return;
      }
      const f32Bytes = rows.find((r) => r.dtype === 'f32')?.bytes ?? rows[0].bytes;
      const table = new Table({
        style: tableStyle(),
        head: ['dtype', 'bytes', 'vs f32', 'encode ms', 'decode ms', 'max rel error'],
      });
      for (const r of rows) {
        table.push([
          r.dtype,
          r.bytes,
          `${fixed(0)((100 * r.bytes) / f32Bytes)}%`,
          fixed(2)(r.encode_ms),
          fixed(2)(r.decode_ms),
          r.max_rel_error.toExponential(2),
        ]);
      }
      process.stdout.write(
        `Weights frame of ${opts.values} values, N(0, 1) (median of ${opts.reps}; relative error over |x| ≥ 2^-14):\n${table.toString()}\n`,
      );
    });
  bench
    .command('transport')
    .description(
      'latency and throughput of one mnist-cnn gradient (14 MB) from a worker to the coordinator: raw TCP, ws, NATS (loopback)',
    )
    .option('--bytes <n>', "frame size (default: mnist-cnn's gradient)", positiveInt, 3_488_874 * 4)
    .option('--frames <n>', 'frames sent back to back for the throughput', positiveInt, 20)
    .option('--reps <n>', 'one-at-a-time frames for the latency (median)', positiveInt, 5)
    .option('--fan-out <n>', 'workers the weights go to in the fan-out table (0: skip it)', nonNegativeInt, 4)
    .option('--json', 'print one JSON object per transport (and per fan-out transport)')
    .action(async (opts: { bytes: number; frames: number; reps: number; fanOut: number; json?: boolean }) => {
      const rows = await benchmarkTransports(opts.bytes, opts.frames, opts.reps);
      const fanOut = opts.fanOut > 0 ? await benchmarkFanOut(opts.bytes, opts.fanOut, opts.reps) : [];
      // nats.js can leave a half-closed socket behind when the server it was closing against has just
      // been stopped (the benchmark's own server is, at once): a finished benchmark must not wait on it.
      setTimeout(() => process.exit(), 200).unref();
      if (opts.json) {
        for (const row of [...rows, ...fanOut]) printJson(row);
        return;
      }
      const table = new Table({
        style: tableStyle(),
        head: ['transport', 'latency ms', 'MB/s', 'vs raw TCP', 'note'],
      });
      for (const r of rows)
        table.push([
          r.transport,
          fixed(1)(r.latency_ms),
          fixed(0)(r.mb_per_s),
          r.vs_tcp === null ? '' : `${fixed(0)(100 * r.vs_tcp)}%`,
          r.note ?? '',
        ]);
      process.stdout.write(
        `One ${(opts.bytes / 1e6).toFixed(1)} MB frame, worker → coordinator on loopback (latency: median of ${opts.reps}; throughput: ${opts.frames} back to back):\n${table.toString()}\n`,
      );
      if (fanOut.length === 0) return;
      const spread = new Table({
        style: tableStyle(),
        head: ['transport', 'workers', 'latency ms', 'MB/s delivered', 'coordinator sends MB', 'note'],
      });
      for (const r of fanOut)
        spread.push([
          r.transport,
          r.workers,
          fixed(1)(r.latency_ms),
          fixed(0)(r.mb_per_s),
          fixed(1)(r.coordinator_mb),
          r.note ?? '',
        ]);
      process.stdout.write(
        `The weights (one ${(opts.bytes / 1e6).toFixed(1)} MB frame), coordinator → ${opts.fanOut} workers (latency: until the last holds it, median of ${opts.reps}):\n${spread.toString()}\n`,
      );
    });
  bench
    .command('cluster')
    .description(
      'steady-state samples/s of `train` (coordinator + local workers over WebSockets) per model and worker count, and where a step goes',
    )
    .option('--model <name...>', `models to run (${modelNames().join(', ')})`, DEFAULT_CLUSTER_MODELS)
    .option(
      '--workers <n...>',
      'worker counts to run',
      positiveInts(DEFAULT_CLUSTER_WORKERS),
      DEFAULT_CLUSTER_WORKERS,
    )
    .option('--batch-size <n>', 'global batch: samples per step, over all workers', positiveInt, 128)
    .option('--micro-batch <n>', 'samples per micro-batch', positiveInt, 32)
    .option('--steps <n>', 'timed steps per configuration (after the warm-up steps)', positiveInt, 10)
    .option('--warmup <n>', 'warm-up steps, run and subtracted', positiveInt, 2)
    .option(
      '--backend <name>',
      `workers' compute backend (${BACKEND_CHOICES.join(', ')})`,
      oneOf(BACKEND_CHOICES),
      'wasm',
    )
    .option(
      '--shards <n...>',
      'shard reducer counts to run each worker count with (1: the coordinator reduces in process)',
      positiveInts(DEFAULT_CLUSTER_SHARDS),
      DEFAULT_CLUSTER_SHARDS,
    )
    .option(
      '--verify-fraction <p>',
      "train's --verify-fraction for every run: what spot checks against lying workers cost",
      share,
      0,
    )
    .option(
      '--bucket-mb <MB>',
      "train's --bucket-mb for every run: gradients in buckets during backward, weights front layers first (0: whole)",
      nonNegativeNumber,
      0,
    )
    .option(
      '--json',
      'print one JSON object per model and worker count; the last stdout line is the last one',
    )
    .action(
      async (opts: {
        model: string[];
        workers: number[];
        batchSize: number;
        microBatch: number;
        steps: number;
        warmup: number;
        backend: string;
        shards: number[];
        verifyFraction: number;
        bucketMb: number;
        json?: boolean;
      }) => {
        const log = createLogger('bench');
        const models = opts.model.map((name) => getModel(name).name);
        const rows = await benchmarkCluster({
          models,
          workers: opts.workers,
          batchSize: opts.batchSize,
          microBatch: opts.microBatch,
          steps: opts.steps,
          warmup: opts.warmup,
          backend: opts.backend,
          shards: opts.shards,
          verifyFraction: opts.verifyFraction,
          bucketMb: opts.bucketMb,
          onRun: ({ model, workers, shards, maxSteps }) =>
            log.info(
              { model, workers, shards, max_steps: maxSteps },
              `train ${model}, ${workers} worker(s), ${shards} shard(s), ${maxSteps} steps`,
            ),
        });
        if (opts.json) {
          for (const row of rows) printJson(row);
          return;
        }
        const table = new Table({
          style: tableStyle(),
          head: [
            'model',
            'backend',
            'workers',
            'shards',
            'batch',
            'micro',
            'samples/s',
            'ms/step',
            'compute ms',
            'protocol ms',
            'reduce ms',
            'optimizer ms',
            'broadcast ms',
            'overhead',
            'speed-up',
          ],
        });
        for (const r of rows) {
          table.push([
            r.model,
            r.backend,
            r.workers,
            r.shards,
            r.batch,
            r.micro_batch,
            fixed(0)(r.samples_per_s),
            fixed(1)(r.ms_per_step),
            fixed(1)(r.compute_ms),
            fixed(1)(r.protocol_ms),
            ...(['reduce', 'optimizer', 'broadcast'] as const).map(
              (p) => `${fixed(1)(r[`${p}_ms`])}${r.clamped.includes(p) ? '*' : ''}`,
            ),
            `${fixed(0)(r.overhead_pct)}%`,
            r.speedup === null ? '–' : `${fixed(2)(r.speedup)}×`,
          ]);
        }
        process.stdout.write(
          `Cluster training step, steady state (steps ${opts.warmup + 1}–${opts.warmup + opts.steps}: a ${opts.warmup + opts.steps}-step run minus a ${opts.warmup}-step run):\n${table.toString()}\n` +
            'protocol = gather − compute (assign, encode, transfer, decode, waiting for the slowest worker); overhead = share of the step that is not compute; ' +
            "speed-up = samples/s over the 1-worker row without shards; shards = shard reducer processes (1: the coordinator reduces). Coordinator and workers share this machine's cores.\n" +
            (rows.some((r) => r.clamped.length > 0)
              ? '* came out below zero (run-to-run noise larger than the phase), shown as 0: use more --steps.\n'
              : ''),
        );
      },
    );
  bench.addCommand(scaleCommand());
  bench.addCommand(floorCommand());
  bench.addCommand(ttaCommand());
  bench.addCommand(adaptersCommand());
  bench.addCommand(agreementCommand());
  return bench;
}
