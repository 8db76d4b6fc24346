/**
 * Shard reducers (shard/) in one process over in-memory links: reduce and Adam split over S slices
 * must give the bits of the coordinator's own reducer for any S and any worker count, refuse a bad
 * slice without losing it, and survive a shard's crash by rolling back and replaying.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { faultInjector } from '../../worker/fault-injection.js';
import { inProcessRun } from '../helpers/in-process-cluster.js';

const workers = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `w${i}` }));

describe('shard reducers', () => {
  it('S = 1, 2, 3 shards and N = 1, 2, 3 workers give the weights of the unsharded run, every sample once', async () => {
    const unsharded = await inProcessRun(workers(2));
    for (const shards of [1, 2, 3]) {
      for (const n of [1, 2, 3]) {
        const run = await inProcessRun(workers(n), { shards });
        expect(run.summary, `S=${shards} N=${n}`).toMatchObject({
          stopped: 'finished',
          shards,
          steps: 12,
          replayed_steps: 0,
        });
        expect(run.summary.accounting).toMatchObject({
          samples: 12 * 64,
          micro_batches: 12 * 8,
          duplicate_samples: 0,
        });
        expect(run.summary.weights_sha256, `S=${shards} N=${n}`).toBe(unsharded.summary.weights_sha256);
      }
    }
  }, 120_000);

  it('a NaN slice is refused by its shard and recomputed: same weights, the refusal counted', async () => {
    const reference = await inProcessRun(workers(2), { shards: 2 });
    const run = await inProcessRun(
      [
        { id: 'poisoner', interceptor: faultInjector({ nanAtStep: 3 }, pino({ level: 'silent' })) },
        { id: 'honest' },
      ],
      { shards: 2 },
    );
    expect(run.summary.rejected_frames.non_finite).toBeGreaterThanOrEqual(1);
    expect(run.summary.accounting).toMatchObject({ duplicate_samples: 0, micro_batches: 12 * 8 });
    expect(run.summary.weights_sha256).toBe(reference.summary.weights_sha256);
  }, 60_000);

  it('a shard lost as the final checkpoint gathers the slices: rollback and replay there too, same weights', async () => {
    const reference = await inProcessRun(workers(2));
    // Checkpoints at steps 0, 5 and 10; the one at 12 is the run's last, after its final evaluation.
    const run = await inProcessRun(workers(2), {
      shards: 2,
      checkpointEvery: 5,
      killShard: { shard: 0, atStep: 12, on: 'collect' },
    });
    expect(run.summary).toMatchObject({ stopped: 'finished', steps: 12, replayed_steps: 2 });
    expect(run.summary.accounting).toMatchObject({
      samples: 12 * 64,
      micro_batches: 12 * 8,
      duplicate_samples: 0,
      missing_samples: 0,
    });
    expect(run.summary.weights_sha256).toBe(reference.summary.weights_sha256);
  }, 60_000);

  it('a slow shard is named a straggler, as a slow worker is', async () => {
    const flagged: string[] = [];
    const run = await inProcessRun(workers(2), {
      shards: 3,
      slowShard: { shard: 2, ms: 60 },
      hooks: { straggler: (id, is) => is && flagged.push(id) },
    });
    expect(run.summary.stopped).toBe('finished');
    // Only the slow one, ever; on a loaded machine it may be cleared and flagged again.
    expect(new Set(flagged)).toEqual(new Set(['shard-2']));
  }, 60_000);

  it('a shard lost mid-run: rollback to the newest checkpoint, replay, same weights, exact ledger', async () => {
    const reference = await inProcessRun(workers(2));
    const run = await inProcessRun(workers(2), {
      shards: 2,
      checkpointEvery: 4,
      killShard: { shard: 1, atStep: 6 },
      metrics: true,
    });
    expect(run.summary).toMatchObject({ stopped: 'finished', steps: 12, replayed_steps: 2 });
    // What the coordinator's metrics saw through its hooks: the loss, the rollback, the replacement.
    const value = (series: string) =>
      Number(
        run
          .metrics!.split('\n')
          .find((l) => l.startsWith(`${series} `))
          ?.split(' ')[1],
      );
    expect(value('gradfleet_shards_lost_total')).toBe(1);
    expect(value('gradfleet_replayed_steps_total')).toBe(2);
    expect(value('gradfleet_shards_connected')).toBe(2);
    // The lost shard-1 reduced steps 0..5 and lost its gauge; its replacement shard-1-r1 took the rest.
    expect(run.metrics).not.toContain('gradfleet_shard_step_seconds{shard="shard-1"}');
    expect(value('gradfleet_shard_phase_seconds_count{shard="shard-1",phase="reduce"}')).toBe(6);
    expect(value('gradfleet_shard_phase_seconds_count{shard="shard-1-r1",phase="reduce"}')).toBe(12 - 4);
    expect(value('gradfleet_shard_phase_seconds_count{shard="shard-0",phase="optimizer"}')).toBe(6 + 12 - 4);
    for (const shard of ['shard-0', 'shard-1', 'shard-1-r1']) {
      expect(value(`gradfleet_shard_received_bytes_total{shard="${shard}"}`), shard).toBeGreaterThan(0);
      expect(value(`gradfleet_shard_sent_bytes_total{shard="${shard}"}`), shard).toBeGreaterThan(0);
    }
    expect(run.summary.accounting).toMatchObject({
      samples: 12 * 64,
      micro_batches: 12 * 8,
      duplicate_samples: 0,
      missing_samples: 0,
    });
    expect(run.summary.weights_sha256).toBe(reference.summary.weights_sha256);
  }, 60_000);
});
