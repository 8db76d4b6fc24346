/**
 * The synthetic backend through the whole cluster: sharding, the reduction tree, the wire and Adam
 * run for real, so the weights are the same bits for 1 and 3 workers; it takes seconds, not minutes.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, run, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
// 6 micro-batches a step: 6 | 3 | 2+2+2 for 3 workers, so the tree nodes that travel differ.
const common = [
  'train',
  '--model',
  'mnist-cnn',
  '--backend',
  'synthetic',
  '--synthetic-ms',
  '40',
  '--batch-size',
  '192',
  '--micro-batch',
  '32',
  '--max-steps',
  '3',
  '--seed',
  '5',
  '--json',
];

describe('--backend synthetic', () => {
  it('trains the same weights_sha256 with 1 and 3 workers, waits its time per micro-batch and reports placeholder loss ln 10', async () => {
    const one = expectOk(await run([...common, '--workers', '1', '--out', `${dir}/one`]));
    const three = expectOk(await run([...common, '--workers', '3', '--out', `${dir}/three`]));
    expect(one).toMatchObject({ backend: 'synthetic', workers: 1, steps: 3 });
    expect(three).toMatchObject({ backend: 'synthetic', workers: 3, steps: 3 });
    expect(one.weights_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(three.weights_sha256).toBe(one.weights_sha256);
    // One worker computes all 6 micro-batches of a step, 40 ms each, one after another; three share them.
    expect(one.phases_s_per_step.compute).toBeGreaterThanOrEqual(6 * 0.04);
    expect(three.phases_s_per_step.compute).toBeLessThan(one.phases_s_per_step.compute);
    expect(one.test_loss).toBeCloseTo(Math.log(10), 6);
    const seed6 = expectOk(
      await run([...common.slice(0, -3), '--seed', '6', '--json', '--workers', '1', '--out', `${dir}/seed6`]),
    );
    expect(seed6.weights_sha256).not.toBe(one.weights_sha256);
  }, 60_000);
});
