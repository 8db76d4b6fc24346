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
          '--synthetic-ms',
          '20',
          '--json',
        ],
        { encoding: 'utf8' },
      );
      expect(run.status, run.stderr).toBe(0);
      const r = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as FloorReport;
      expect(r).toMatchObject({ workers: 3, link_mbit: 100, rounds: 3, synthetic_ms: 20 });
      // Worked out by hand, not with the report's formula: mnist-small is 60,874 float32 values,
      // 243,496 bytes, a third of it 81,165.3 → 81,166 bytes. Each machine sends its slice to each of
      // the 2 others twice a round: 4 × 81,166 × 8 = 2,597,312 bits, 25.973 ms at 100 Mbit/s.
      expect(r.slice_bytes).toBe(81_166);
      expect(r.link_only_ms).toBeCloseTo(25.97312, 4);
      expect(r.round_ms).toBeGreaterThan(0.9 * 25.97312);
      expect(r.round_ms).toBeLessThan(40 * 25.97312);
      // The floor is the links' time: 20 / (20 + 25.973) after compute; overlapped, the links bound the step
      // (26 ms > 20 ms of compute); plain TCP's own round, after compute.
      expect(r.schedule).toBe('parallel');
      expect(r.max_efficiency).toBeCloseTo(20 / (20 + 25.97312), 6);
      expect(r.max_efficiency_overlapped).toBeCloseTo(20 / 25.97312, 6);
      expect(r.tcp_efficiency).toBeCloseTo(20 / (20 + r.round_ms), 6);
      expect(r.tcp_efficiency).toBeLessThan(r.max_efficiency);
    },
  );
});
