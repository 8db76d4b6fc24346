/** `bench floor`: plain-TCP rounds between simulated machines take at least what their links allow. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { benchmarkFloor, type FloorReport } from '../../bench/floor.js';
import { bin } from '../helpers/gradfleet.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot)
  console.log(
    'test/bench/floor.test.ts: the simulated-cluster case is skipped: not root (it creates network namespaces)',
  );

describe('bench floor', () => {
  it('refuses a cluster of one machine and zero rounds', async () => {
    await expect(
      benchmarkFloor({ workers: 1, modelBytes: 1e6, link: { mbit: 100 }, rounds: 2, syntheticMs: 500 }),
    ).rejects.toThrow(/at least 2/);
    await expect(
      benchmarkFloor({ workers: 3, modelBytes: 1e6, link: { mbit: 100 }, rounds: 0, syntheticMs: 500 }),
    ).rejects.toThrow(/--rounds/);
  });

  it.runIf(isRoot)(
    "three machines on 100 Mbit/s links: each round takes at least the links' time for 2 × 2 slices",
    () => {
      const run = spawnSync(
        process.execPath,
        [
          bin,
          'bench',
          'floor',
          '--workers',
          '3',
          '--model',
          'mnist-small',
          '--link-mbit',
          '100',
          '--rounds',
          '3',
          '--json',
        ],
        { encoding: 'utf8' },
      );
      expect(run.status, run.stderr).toBe(0);
      const r = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as FloorReport;
      expect(r.slice_bytes).toBe(Math.ceil((60_874 * 4) / 3));
      expect(r.link_only_ms).toBeCloseTo((2 * 2 * r.slice_bytes * 8) / 1e5);
      expect(r.round_ms).toBeGreaterThan(0.9 * r.link_only_ms);
      expect(r.round_ms).toBeLessThan(40 * r.link_only_ms);
      expect(r.max_efficiency).toBeCloseTo(500 / (500 + r.round_ms));
    },
  );
});
