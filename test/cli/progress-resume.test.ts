/**
 * The progress bar's speed counts only what this process trains: a run resumed mid-epoch starts its bar
 * at the samples already done, and its rate from there (it once showed 7,790 samples/s where the summary
 * said 1,112: the resumed samples were counted as done in no time).
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createProgress } from '../../cli/progress.js';
import { progressHooks } from '../../cli/run-options.js';
import type { StepReport } from '../../coordinator/hooks.js';

/** A logger whose lines (the structured progress lines off a terminal) are kept. */
function capture() {
  const lines: Record<string, any>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { log, lines };
}

const step = (stepInEpoch: number, seconds: number) =>
  ({
    position: { step: 100 + stepInEpoch, epoch: 1, stepInEpoch },
    stepsPerEpoch: 469,
    samples: 128,
    epochSamples: 60_000,
    loss: 0.1,
    seconds: { total: seconds, gather: seconds, reduce: 0, optimizer: 0, broadcast: 0 },
  }) as unknown as StepReport;

describe('progress after --resume', () => {
  it('a bar opened at 30,000 done counts its rate from there', () => {
    const { log, lines } = capture();
    let t = 1_000_000;
    const progress = createProgress(log, 'epoch 2', 60_000, 'samples', {
      now: () => t,
      from: 30_000,
      sinceMs: 1000,
    });
    progress.update(30_128);
    t += 4000;
    progress.update(30_640);
    t += 1000;
    progress.update(30_768);
    // 768 samples in 6 s, not 30,768.
    expect(lines.at(-1)).toMatchObject({ done: 30_768, rate: 128 });
  });

  it("a resumed epoch's first step is timed from its own start, with the samples before it not counted", () => {
    const { log, lines } = capture();
    const hooks = progressHooks(log);
    // Resumed at step 234 of the epoch; the first step of this process took half a second.
    hooks.step?.(step(234, 0.5));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ label: 'epoch 2', done: 235 * 128, total: 60_000 });
    expect(lines[0].rate).toBeGreaterThan(200);
    expect(lines[0].rate).toBeLessThanOrEqual(256);
  });
});
