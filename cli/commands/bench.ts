/**
 * `gradfleet bench compute`: training-step and conv-kernel throughput per model and backend.
 * `gradfleet bench wire`: frame size, encode/decode time and precision per payload dtype.
 */
import Table from 'cli-table3';
import { Command } from 'commander';
import { benchmarkConvLayers, benchmarkStep, profileStep } from '../../bench/compute.js';
import { benchmarkWire } from '../../bench/wire.js';
import { createLogger } from '../../common/logger.js';
import { BACKEND_CHOICES, type BackendChoice, selectBackend } from '../../training/backends/select.js';
import { getModel, modelNames } from '../../training/models/zoo.js';
import { oneOf, positiveInt, printJson } from '../options.js';
import { createProgress } from '../progress.js';

const fixed = (digits: number) => (v: number) => v.toFixed(digits);

export function benchCommand(): Command {
  const bench = new Command('bench').description('benchmarks (run them alone: on 2 cores anything else halves the figure)');
  bench.command('compute')
    .description('training-step throughput and conv-kernel GFLOP/s per model and backend')
    .option('--model <name...>', `models to run (${modelNames().join(', ')})`, modelNames())
    .option('--backend <name...>', 'backends to run', ['auto'])
    .option('--batch <n>', 'micro-batch size', positiveInt, 64)
    .option('--steps <n>', 'timed steps (median reported)', positiveInt, 10)
    .option('--conv-repeats <n>', 'timed calls per conv kernel', positiveInt, 5)
    .option('--profile', 'also print where one step\'s time goes, per kernel')
    .option('--json', 'print one JSON object per model and backend; the last stdout line is the last one')
    .action(async (opts: { model: string[]; backend: string[]; batch: number; steps: number; convRepeats: number; profile?: boolean; json?: boolean }) => {
      const log = createLogger('bench');
      const models = opts.model.map(getModel);
      const backends = opts.backend.map(oneOf(BACKEND_CHOICES)) as BackendChoice[];
      const steps = new Table({ head: ['model', 'backend', 'batch', 'ms/step', 'samples/s', 'GFLOP/s'] });
      const profiles = new Table({ head: ['model', 'backend', 'kernel', 'calls', 'ms', 'share'] });
      const convs = new Table({ head: ['model', 'backend', 'layer', 'shape', 'forward GFLOP/s', 'input-grad GFLOP/s', 'filter-grad GFLOP/s'] });
      for (const choice of backends) {
        const backend = (await selectBackend(choice, log)).name;
        for (const model of models) {
          const progress = createProgress(log, `${model.name} on ${backend}`, opts.steps, 'steps');
          const step = benchmarkStep(model, opts.batch, opts.steps, (i) => progress.update(i + 1));
          progress.stop();
          const layers = benchmarkConvLayers(model, opts.batch, opts.convRepeats);
          steps.push([model.name, backend, opts.batch, fixed(1)(step.ms_per_step), fixed(0)(step.samples_per_s), fixed(2)(step.gflops)]);
          for (const l of layers) {
            convs.push([model.name, backend, l.layer, l.shape, ...[l.forward_gflops, l.input_grad_gflops, l.filter_grad_gflops].map(fixed(1))]);
          }
          const profile = opts.profile ? await profileStep(model, opts.batch) : [];
          const total = profile.reduce((a, r) => a + r.ms, 0);
          for (const r of profile.slice(0, 12)) {
            profiles.push([model.name, backend, r.kernel, r.calls, fixed(1)(r.ms), `${fixed(0)((100 * r.ms) / total)}%`]);
          }
          if (opts.json) printJson({ ...step, conv_layers: layers, ...(opts.profile ? { profile } : {}) });
        }
      }
      if (opts.json) return;
      process.stdout.write(`Training step (one process, one core):\n${steps.toString()}\n\nConvolution kernels at the step's shapes:\n${convs.toString()}\n`);
      if (opts.profile) process.stdout.write(`\nWhere one step's kernel time goes (top 12):\n${profiles.toString()}\n`);
    });
  bench.command('wire')
    .description('frame bytes, encode/decode ms and max relative error of a weights frame per payload dtype (f32, f16, bf16)')
    .option('--values <n>', 'payload values (default: mnist-large\'s parameter count)', positiveInt, 3_488_874)
    .option('--reps <n>', 'timed encode/decode pairs per dtype (median reported)', positiveInt, 5)
    .option('--json', 'print one JSON object per dtype')
    .action((opts: { values: number; reps: number; json?: boolean }) => {
      const rows = benchmarkWire(opts.values, opts.reps);
      if (opts.json) {
        for (const row of rows) printJson({ values: opts.values, ...row });
        return;
      }
      const f32Bytes = rows.find((r) => r.dtype === 'f32')?.bytes ?? rows[0].bytes;
      const table = new Table({ head: ['dtype', 'bytes', 'vs f32', 'encode ms', 'decode ms', 'max rel error'] });
      for (const r of rows) {
        table.push([r.dtype, r.bytes, `${fixed(0)((100 * r.bytes) / f32Bytes)}%`, fixed(2)(r.encode_ms), fixed(2)(r.decode_ms), r.max_rel_error.toExponential(2)]);
      }
      process.stdout.write(`Weights frame of ${opts.values} values, N(0, 1) (median of ${opts.reps}; relative error over |x| ≥ 2^-14):\n${table.toString()}\n`);
    });
  return bench;
}
