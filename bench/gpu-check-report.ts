/**
 * The report of scripts/gpu-check.sh: reads the JSON lines its steps wrote into OUT_DIR, prints
 * one table per part and writes everything as OUT_DIR/gpu-check.json.
 * Usage: node dist/bench/gpu-check-report.js OUT_DIR
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Table from 'cli-table3';
import { tableStyle } from '../common/colour.js';
import { adapterLabel, type GpuAdapterInfo } from '../training/backends/adapters.js';

/** The JSON lines gpu-check.sh's steps write, one type per file. */
interface AgreementRow {
  model: string;
  backend: string;
  skipped?: string;
  max_rel_error?: number;
  max_abs_error?: number;
  ok?: boolean;
}
interface ComputeRow {
  model: string;
  backend: string;
  batch: number;
  ms_per_step: number;
  samples_per_s: number;
}
interface TorchRow {
  model: string;
  batch: number;
  samples_per_s: number;
  device: string;
}
interface EpochRow {
  model: string;
  backend: string;
  epochs: number;
  wall_s: number;
  samples_per_s: number;
  test_accuracy: number;
}
interface SkipRow {
  what: string;
  why: string;
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: gpu-check-report OUT_DIR');
const lines = <Row>(name: string): Row[] => {
  const path = join(dir, name);
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l) as Row);
};
const fixed = (digits: number) => (v: unknown) => (typeof v === 'number' ? v.toFixed(digits) : '');
const exp = (v: unknown) => (typeof v === 'number' ? v.toExponential(2) : '');

const adapters = JSON.parse(readFileSync(join(dir, 'adapters.json'), 'utf8')) as {
  adapters: GpuAdapterInfo[];
  reason: string | null;
};
const agreement = lines<AgreementRow>('agreement.jsonl');
const compute = lines<ComputeRow>('compute.jsonl');
const epochs = lines<EpochRow>('epochs.jsonl');
const torch = lines<TorchRow>('torch.jsonl');
const skipped = lines<SkipRow>('skipped.jsonl');

const out: string[] = [];
out.push(
  `Adapters: ${adapters.adapters.length ? adapters.adapters.map((a, i) => `${i}: ${adapterLabel(a)}`).join('; ') : `none (${adapters.reason})`}`,
);

const agree = new Table({
  style: tableStyle(),
  head: ['model', 'backend', 'max rel error', 'max abs error (≈0 grads)', 'agrees'],
});
for (const r of agreement) {
  const cells = r.skipped
    ? ['', '', `skipped: ${String(r.skipped).slice(0, 90)}`]
    : [exp(r.max_rel_error), exp(r.max_abs_error), r.ok ? 'yes' : 'NO'];
  agree.push([r.model, r.backend, ...cells]);
}
out.push(`Gradient agreement with the cpu backend:\n${agree.toString()}`);

const speed = new Table({
  style: tableStyle(),
  head: ['model', 'backend', 'micro-batch', 'ms/step', 'samples/s', 'PyTorch samples/s', 'ratio'],
});
for (const r of compute) {
  const t = torch.find((x) => x.model === r.model && x.batch === r.batch);
  speed.push([
    r.model,
    r.backend,
    r.batch,
    fixed(1)(r.ms_per_step),
    fixed(0)(r.samples_per_s),
    t ? `${fixed(0)(t.samples_per_s)} (${t.device})` : '',
    t ? `${fixed(2)(r.samples_per_s / t.samples_per_s)}×` : '',
  ]);
}
out.push(`bench compute (one process, median step):\n${speed.toString()}`);

if (epochs.length) {
  const ep = new Table({
    style: tableStyle(),
    head: ['model', 'backend', 'epochs', 'wall s', 'samples/s', 'test accuracy'],
  });
  for (const r of epochs)
    ep.push([
      r.model,
      r.backend,
      r.epochs,
      fixed(1)(r.wall_s),
      fixed(0)(r.samples_per_s),
      `${fixed(2)(100 * r.test_accuracy)}%`,
    ]);
  out.push(`1-epoch runs on the best backend:\n${ep.toString()}`);
}
out.push(
  `Skipped:\n${skipped.length ? skipped.map((s) => `- ${s.what}: ${s.why}`).join('\n') : '- nothing'}`,
);

process.stdout.write(`${out.join('\n\n')}\n`);
writeFileSync(
  join(dir, 'gpu-check.json'),
  `${JSON.stringify({ adapters, agreement, compute, epochs, torch, skipped }, null, 2)}\n`,
);
process.stdout.write(`written: ${join(dir, 'gpu-check.json')}\n`);
