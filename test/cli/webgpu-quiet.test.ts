/**
 * Dawn's own warnings (`Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced…`, which
 * the `webgpu` package writes straight to stderr for the software adapter) never reach the terminal when
 * `--backend auto` looks for a GPU: the adapters are asked for in a child process
 * (training/backends/webgpu-probe.ts), whose stderr shows only with GRADFLEET_LOG_LEVEL=debug.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run, smallMnist, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir('gradfleet-webgpu-quiet-');
const DAWN = /artificially reduced|^Warning: /m;

// A worker that finds no coordinator (--no-reconnect: at once) has chosen its backend by then.
const lonelyWorker = ['worker', '--connect', 'ws://127.0.0.1:9', '--no-reconnect', '--backend', 'auto'];

describe('--backend auto', () => {
  it("keeps Dawn's warnings off stderr, and shows them under GRADFLEET_LOG_LEVEL=debug", async () => {
    // A worker that never joins says only why (its backend line comes once it is let in).
    // A temp directory of its own: workers other test files run now are not on this machine's census.
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp, { recursive: true });
    const quiet = await run(lonelyWorker, { TMPDIR: tmp });
    expect(quiet.stderr).not.toMatch(DAWN);
    expect(quiet.stderr.trim().split('\n')).toHaveLength(1);
    expect(quiet.stderr).toMatch(/^gradfleet: error: cannot connect to ws:\/\/127\.0\.0\.1:9/);

    const debug = await run(lonelyWorker, { GRADFLEET_LOG_LEVEL: 'debug' });
    expect(debug.stderr).toMatch(/Warning: maxDynamic\w+PerPipelineLayout artificially reduced/);
    expect(debug.stderr).toMatch(/compute backend: native/);
    expect(debug.stderr).toMatch(/tfjs-backend-webgpu \(llvmpipe.* is a software adapter/);

    // One thread is a thread.
    expect((await run([...lonelyWorker, '--threads', '1'], { GRADFLEET_LOG_LEVEL: 'debug' })).stderr).toMatch(
      /compute backend: native \(1 thread\);/,
    );
  });

  it('train: neither the plan (the adapters it lists) nor its local workers print them', async () => {
    const data = smallMnist(dir, 256, 64);
    const r = await run([
      'train',
      '--model',
      'mnist-small',
      '--train',
      data.train,
      '--test',
      data.test,
      '--workers',
      '1',
      '--max-steps',
      '1',
      '--out',
      `${dir}/run`,
      '--json',
    ]);
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    expect(r.stderr).toMatch(/local workers: no hardware WebGPU adapter/);
    expect(r.stderr).not.toMatch(DAWN);
    expect(r.json?.backend).toBe('native');
  });
});
