/**
 * The coordinator, its pool and workers in one process over in-memory links (helpers/in-process-
 * cluster.ts): the same code as a spawned cluster, minus sockets and processes, so each fault lands
 * on an exact frame and a run takes well under a second. Every run must end with the undisturbed
 * weights and an exact sample ledger.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { encodeFrame } from '../../protocol/codec.js';
import { faultInjector } from '../../worker/fault-injection.js';
import { type InProcessRun, inProcessRun } from '../helpers/in-process-cluster.js';

const exact = (run: InProcessRun) => {
  expect(run.summary.stopped).toBe('finished');
  expect(run.summary.accounting).toMatchObject({ duplicate_samples: 0 });
  expect(run.summary.accounting.micro_batches).toBe(12 * 8);
};

describe('in-process cluster', () => {
  let undisturbed: string;

  it('1, 2 and 3 workers give the same weights, every micro-batch trained once', async () => {
    const shas: string[] = [];
    for (const n of [1, 2, 3]) {
      const run = await inProcessRun(Array.from({ length: n }, (_, i) => ({ id: `w${i}` })));
      exact(run);
      expect(run.summary.workers).toBe(n);
      expect(run.summary.rejected_frames).toEqual({});
      for (const outcome of run.workers.values()) expect(outcome).toMatchObject({ end: 'shutdown' });
      shas.push(run.summary.weights_sha256);
    }
    expect(new Set(shas).size).toBe(1);
    undisturbed = shas[0];
  });

  it('a link cut right after a worker sends its 5th contribution: its work is reassigned, same weights', async () => {
    let contributions = 0;
    const run = await inProcessRun([
      { id: 'cut', fault: (m) => (m.type === 'contribution' && ++contributions > 5 ? 'cut' : 'deliver') },
      { id: 'steady' },
    ]);
    exact(run);
    expect(run.workers.get('cut')).toMatchObject({ end: 'lost' });
    expect(run.summary.weights_sha256).toBe(undisturbed);
  });

  it('contributions that vanish on the wire are reassigned at the step deadline, same weights', async () => {
    let dropped = 0;
    const run = await inProcessRun(
      [
        // Step 3's nodes from this worker never arrive (a stalled link); it goes on working. Without
        // the deadline's reassignment the step would wait for them forever.
        {
          id: 'lossy',
          fault: (m) => {
            if (m.type !== 'contribution' || m.step !== 3) return 'deliver';
            dropped++;
            return 'drop';
          },
        },
        { id: 'steady' },
      ],
      { stepDeadlineMs: 300 },
    );
    exact(run);
    expect(dropped).toBeGreaterThan(0);
    expect(run.summary.weights_sha256).toBe(undisturbed);
  });

  it('a NaN contribution (fault injection) is rejected as non_finite and recomputed, same weights', async () => {
    const run = await inProcessRun([
      { id: 'poisoner', interceptor: faultInjector({ nanAtStep: 4 }, pino({ level: 'silent' })) },
      { id: 'steady' },
    ]);
    exact(run);
    expect(run.summary.rejected_frames).toEqual({ non_finite: 1 });
    expect(run.summary.weights_sha256).toBe(undisturbed);
  });

  it('a frame of the wrong direction from an admitted worker is counted as unexpected_message and changes nothing', async () => {
    let injected = false;
    const run = await inProcessRun([
      {
        id: 'confused',
        fault: (m, inject) => {
          if (m.type === 'contribution' && !injected) {
            injected = true;
            // A coordinator's message, sent by a worker: the coordinator's channel refuses it by direction.
            inject(
              encodeFrame({
                type: 'assign',
                step: m.step,
                epoch: 0,
                batchStart: 0,
                batchSamples: 64,
                weightsVersion: m.step,
                first: 0,
                count: 8,
              }),
            );
          }
          return 'deliver';
        },
      },
      { id: 'steady' },
    ]);
    exact(run);
    expect(injected).toBe(true);
    expect(run.summary.rejected_frames).toEqual({ unexpected_message: 1 });
    expect(run.summary.weights_sha256).toBe(undisturbed);
  });
});
