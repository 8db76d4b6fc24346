/**
 * The native backend in the cluster: 1, 2 and 3 native workers end with the same weights_sha256;
 * and without the addon (the loader pointed at a missing file) `auto` still trains, on wasm, and
 * the log says why native was skipped, while `--backend native` fails with the reason and a remedy.
 */
import { describe, expect, it } from 'vitest';
import { ADDON_PATH_ENV } from '../../training/kernels/native/addon.js';
import { expectOk, run, smallMnist, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 200, 100);
const common = [
  '--model',
  'mnist-small',
  '--batch-size',
  '48',
  '--micro-batch',
  '16',
  '--seed',
  '5',
  '--epochs',
  '2',
  '--max-steps',
  '6',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
const missingAddon = {
  [ADDON_PATH_ENV]: `${dir}/no-such/gradfleet_native.node`,
  GRADFLEET_WORKER_LOG_LEVEL: 'info',
};

describe('native workers', () => {
  it('1, 2 and 3 workers end with the same weights_sha256', async () => {
    const summaries = [];
    for (const workers of [1, 2, 3]) {
      summaries.push(
        expectOk(
          await run([
            'train',
            ...common,
            '--backend',
            'native',
            '--workers',
            String(workers),
            '--out',
            `${dir}/native-${workers}`,
          ]),
        ),
      );
    }
    expect(summaries.map((s) => s.backend)).toEqual(['native', 'native', 'native']);
    expect(summaries.map((s) => s.steps)).toEqual([6, 6, 6]);
    const sha = summaries[0].weights_sha256;
    expect(sha).toMatch(/^[0-9a-f]{64}$/);
    expect(summaries.map((s) => s.weights_sha256)).toEqual([sha, sha, sha]);
  }, 240_000);
});

describe('without the addon', () => {
  it('auto trains on wasm, and the workers log why native was skipped', async () => {
    const r = await run(
      ['train', ...common, '--backend', 'auto', '--workers', '1', '--out', `${dir}/fallback`],
      missingAddon,
    );
    const summary = expectOk(r);
    expect(summary.backend).toBe('wasm');
    expect(summary.steps).toBe(6);
    expect(r.stderr).toMatch(
      /compute backend: wasm; skipped .*gradfleet native addon \(oneDNN\) \(addon not built \(.*no-such\/gradfleet_native\.node missing/,
    );
  }, 120_000);

  it('--backend native is a clear error naming the reason and the remedy', async () => {
    const r = await run(
      ['bench', 'compute', '--backend', 'native', '--model', 'mnist-small', '--steps', '1'],
      missingAddon,
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(
      /--backend native: no backend could be loaded \(gradfleet native addon \(oneDNN\): addon not built .*\)\. Install build-essential and libdnnl-dev/,
    );
  }, 60_000);
});
