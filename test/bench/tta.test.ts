/**
 * bench tta: its pure parts (modes, their train flags, the first evaluation reaching a target), a small run of
 * real training without the simulated cluster, and (as root) with it: every figure of the report is the product
 * of the figures it names.
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { firstReaching, modeArgs, parseTtaMode, samplesPerStep } from '../../bench/tta.js';
import { expectOk, run, runOnce, smallMnist, tempDir } from '../helpers/gradfleet.js';

const isRoot = process.getuid?.() === 0;

describe('bench tta modes', () => {
  it('parses sync and local-H, each with an optional wire dtype, and nothing else', () => {
    expect(parseTtaMode('sync')).toEqual({ name: 'sync', localSteps: null, wire: 'f32' });
    expect(parseTtaMode('sync-bf16')).toEqual({ name: 'sync-bf16', localSteps: null, wire: 'bf16' });
    expect(parseTtaMode('local-16')).toEqual({ name: 'local-16', localSteps: 16, wire: 'f32' });
    expect(parseTtaMode('local-4-fp16')).toEqual({ name: 'local-4-fp16', localSteps: 4, wire: 'fp16' });
    for (const bad of ['local', 'local-0', 'local-x', 'sync-f64', 'async', 'local-4-bf16-x'])
      expect(parseTtaMode(bad), bad).toBeUndefined();
  });

  it('gives a synchronous step K micro-batches of the inner batch, a round K replicas of H inner batches', () => {
    const o = { replicas: 8, innerBatch: 16 };
    const sync = parseTtaMode('sync-bf16')!;
    const local = parseTtaMode('local-4')!;
    expect(samplesPerStep(o, sync)).toBe(128);
    expect(samplesPerStep(o, local)).toBe(512);
    expect(modeArgs(o, sync)).toEqual(['--batch-size', '128', '--micro-batch', '16', '--wire', 'bf16']);
    expect(modeArgs(o, local)).toEqual([
      '--batch-size',
      '16',
      '--local-steps',
      '4',
      '--replicas',
      '8',
      '--wire',
      'f32',
    ]);
  });

  it('takes the first evaluation at or above the target', () => {
    const e = (step: number, test_accuracy: number) => ({
      step,
      samples: step * 10,
      test_accuracy,
      test_loss: 0,
    });
    const evaluations = [e(2, 0.5), e(4, 0.9), e(6, 0.85), e(8, 0.95)];
    expect(firstReaching(evaluations, 0.9)?.step).toBe(4);
    expect(firstReaching(evaluations, 0.94)?.step).toBe(8);
    expect(firstReaching(evaluations, 0.99)).toBeUndefined();
  });
});

const dir = tempDir('gradfleet-tta-');
const data = smallMnist(dir, 600, 200);
// K = 4, inner batch 8: a synchronous step of 32 samples, a local-2 round of 64; 2 epochs of 600 samples.
const small = [
  'bench',
  'tta',
  '--model',
  'mnist-small',
  '--modes',
  'sync,local-2',
  '--replicas',
  '4',
  '--inner-batch',
  '8',
  '--epochs',
  '2',
  '--target',
  '0.6',
  '--eval-every-samples',
  '128',
  '--train',
  data.train,
  '--test',
  data.test,
  '--backend',
  'wasm',
  '--json',
];

const statistics = runOnce([...small, '--no-hardware']);

describe('gradfleet bench tta', () => {
  it('--no-hardware: steps and samples to the target from real training, the same samples in every mode', async () => {
    const report = await statistics();
    expect(report).toMatchObject({
      model: 'mnist-small',
      target: 0.6,
      replicas: 4,
      inner_batch: 8,
      hardware: null,
    });
    expect(report.one_machine).toBeNull();
    const [sync, local] = report.rows;
    expect(sync).toMatchObject({
      mode: 'sync',
      samples_per_step: 32,
      eval_every_steps: 4,
      local_steps: null,
    });
    expect(local).toMatchObject({
      mode: 'local-2',
      samples_per_step: 64,
      eval_every_steps: 2,
      local_steps: 2,
    });
    for (const row of report.rows) {
      expect(row.final_samples).toBe(1200);
      // The curve the crossing was read from: its first point at or above the target.
      const first = row.evaluations.find((e: { test_accuracy: number }) => e.test_accuracy >= 0.6);
      expect([first?.step, first?.samples]).toEqual([row.steps_to_target, row.samples_to_target]);
      expect(row.evaluations.at(-1).test_accuracy).toBe(row.final_accuracy);
      expect(row.steps_to_target).not.toBeNull();
      expect(row.samples_to_target).toBeLessThanOrEqual(1200);
      expect(row.steps_to_target % row.eval_every_steps === 0 || row.samples_to_target % 600 === 0).toBe(
        true,
      );
      expect(row.step_ms).toBeNull();
    }
    // The sync row is exactly `train` with the mode's flags.
    const direct = expectOk(
      await run([
        'train',
        '--model',
        'mnist-small',
        '--batch-size',
        '32',
        '--micro-batch',
        '8',
        '--epochs',
        '2',
        '--train',
        data.train,
        '--test',
        data.test,
        '--backend',
        'wasm',
        '--out',
        `${dir}/direct`,
        '--json',
      ]),
    );
    expect(sync.weights_sha256).toBe(direct.weights_sha256);
    expect(sync.final_accuracy).toBe(direct.test_accuracy);
  }, 180_000);

  it.skipIf(!isRoot)(
    'on 2 simulated machines, with the statistics of the run above: time to accuracy = steps × ms per step, one machine = sync steps × K × compute',
    async () => {
      const earlier = `${dir}/statistics.json`;
      writeFileSync(earlier, JSON.stringify(await statistics()));
      const report = expectOk(
        await run([
          ...small,
          '--statistics',
          earlier,
          '--machines',
          '2',
          '--link-mbit',
          '50',
          '--synthetic-ms',
          '30',
          '--scale-steps',
          '2',
          '--scale-warmup',
          '1',
          '--shards',
          'none',
        ]),
      );
      const [sync, local] = report.rows;
      // Not trained again: the earlier report's figures.
      expect(report.rows.map((r: Record<string, unknown>) => [r.steps_to_target, r.weights_sha256])).toEqual(
        (await statistics()).rows.map((r: Record<string, unknown>) => [r.steps_to_target, r.weights_sha256]),
      );
      expect(report.one_machine).toEqual({
        steps: sync.steps_to_target,
        step_ms: 4 * 30,
        seconds: (sync.steps_to_target * 4 * 30) / 1000,
      });
      for (const row of report.rows) {
        expect(row.tta_s).toBeCloseTo((row.steps_to_target * row.step_ms) / 1000, 9);
        expect(row.speedup).toBeCloseTo(report.one_machine.seconds / row.tta_s, 9);
        expect(row.efficiency).toBeGreaterThan(0);
      }
      // A round computes 2 replicas × 2 inner steps per machine, a synchronous step 2 micro-batches.
      expect(local.step_ms).toBeGreaterThan(4 * 30);
      expect(sync.step_ms).toBeGreaterThan(2 * 30);
    },
    240_000,
  );
});
