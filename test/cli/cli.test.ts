/** The gradfleet binary as a user runs it (built by `npm test` before vitest starts). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'gradfleet-cli-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function gradfleet(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  const lines = r.stdout.trim().split('\n');
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, last: lines[lines.length - 1] };
}

describe('gradfleet train', () => {
  it('trains, evaluates and ends stdout with the JSON summary; the same seed gives the same weights', () => {
    const args = [
      'train',
      '--model',
      'mnist-small',
      '--max-steps',
      '40',
      '--batch-size',
      '64',
      '--backend',
      'wasm',
      '--workers',
      '1',
      '--out',
      out,
      '--json',
    ];
    const first = gradfleet(...args);
    expect(first.status).toBe(0);
    const summary = JSON.parse(first.last);
    expect(summary).toMatchObject({
      model: 'mnist-small',
      backend: 'wasm',
      workers: 1,
      transport: 'ws',
      steps: 40,
      samples: 40 * 64,
    });
    for (const key of ['epochs', 'wall_s', 'samples_per_s', 'test_loss', 'checkpoint'])
      expect(summary).toHaveProperty(key);
    expect(summary.weights_sha256).toMatch(/^[0-9a-f]{64}$/);
    // 40 steps of Adam already put a small CNN far above chance on the real test set.
    expect(summary.test_accuracy).toBeGreaterThan(0.7);
    expect(JSON.parse(gradfleet(...args).last).weights_sha256).toBe(summary.weights_sha256);
    expect(JSON.parse(gradfleet(...args.slice(0, -1), '--seed', '2', '--json').last).weights_sha256).not.toBe(
      summary.weights_sha256,
    );
  }, 120_000);

  it.each([
    [['--batch-size', 'abc'], /--batch-size.*expected a positive integer/],
    [['--epochs', '0'], /--epochs.*expected a positive integer/],
    [['--backend', 'gpu'], /expected one of: auto, tensorflow, webgpu, native, wasm, cpu/],
    [['--model', 'resnet'], /unknown model 'resnet'; known models: mnist-cnn, mnist-small/],
    [['--train', '/nonexistent/train.csv'], /\/nonexistent\/train\.csv/],
    [['--bogus'], /unknown option '--bogus'/],
    [['--micro-batch', '100', '--batch-size', '64'], /micro-batch size 100 exceeds the batch size 64/],
    [['--workers', '0'], /--workers.*expected a positive integer/],
    [['--lr-decay', '1.5'], /--lr-decay.*expected a number in \(0, 1\]/],
    [['--max-frame-mb', '0'], /--max-frame-mb.*expected a positive integer/],
  ])('rejects %j with a clear message and a non-zero exit', (flags, message) => {
    const r = gradfleet('train', ...flags);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.length).toBeLessThan(2000); // one clear message, not a dump of the wasm runtime
  });
});

describe('gradfleet worker', () => {
  it('says clearly when the coordinator cannot be reached', () => {
    const r = gradfleet(
      'worker',
      '--connect',
      'ws://127.0.0.1:9',
      '--connect-timeout',
      '1',
      '--backend',
      'wasm',
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/cannot connect to ws:\/\/127\.0\.0\.1:9/);
  });
});

describe('gradfleet bench compute --json', () => {
  it('ends stdout with the step and conv-layer figures', () => {
    const r = gradfleet(
      'bench',
      'compute',
      '--model',
      'mnist-small',
      '--backend',
      'wasm',
      '--batch',
      '16',
      '--steps',
      '2',
      '--conv-repeats',
      '1',
      '--json',
    );
    expect(r.status).toBe(0);
    const result = JSON.parse(r.last);
    expect(result).toMatchObject({ model: 'mnist-small', backend: 'wasm', batch: 16, steps: 2 });
    for (const key of ['ms_per_step', 'samples_per_s', 'gflops']) expect(result[key]).toBeGreaterThan(0);
    expect(result.conv_layers.map((l: { layer: string }) => l.layer)).toEqual(['conv1', 'conv2', 'conv3']);
    expect(result.conv_layers[1].filter_grad_gflops).toBeGreaterThan(0);
    expect(result.dense_layers.map((l: { layer: string }) => l.layer)).toEqual(['dense1', 'dense2']);
    expect(result.dense_layers[0].filter_grad_gflops).toBeGreaterThan(0);
  }, 120_000);

  it('--threads 1,2 runs native once per thread count, and the other backends once', () => {
    const r = gradfleet(
      'bench',
      'compute',
      '--model',
      'mnist-small',
      '--backend',
      'native',
      'wasm',
      '--threads',
      '1,2',
      '--batch',
      '8',
      '--steps',
      '1',
      '--conv-repeats',
      '1',
      '--json',
    );
    expect(r.status).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(rows.map((row) => [row.backend, row.threads])).toEqual([
      ['native', 1],
      ['native', 2],
      ['wasm', null],
    ]);
  }, 120_000);
});

describe('gradfleet bench transport --json', () => {
  it('measures tcp, ws and NATS one way, sealed and not, and the weights to 3 workers: NATS sends them once; the process exits by itself', () => {
    const r = gradfleet(
      'bench',
      'transport',
      '--bytes',
      '1000000',
      '--frames',
      '3',
      '--reps',
      '2',
      '--fan-out',
      '3',
      '--json',
    );
    expect(r.status).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((row) => row.transport)).toEqual([
      'tcp (raw)',
      'ws',
      'seal+open (AES-256-GCM)',
      'ws (sealed)',
      'nats',
      'nats (sealed)',
      'ws',
      'nats (broadcast)',
    ]);
    for (const row of rows) {
      // A note means a part could not run (no nats-server), except the crypto-only row, which says what it
      // is.
      if (row.transport !== 'seal+open (AES-256-GCM)') expect(row.note).toBeUndefined();
      expect(row.mb_per_s).toBeGreaterThan(0);
      expect(row.latency_ms).toBeGreaterThan(0);
    }
    expect(rows[6]).toMatchObject({ workers: 3, coordinator_mb: 3 });
    expect(rows[7]).toMatchObject({ workers: 3, coordinator_mb: 1 });
  }, 120_000);
});
