/**
 * What a person sees on a terminal: `gradfleet train` run in a real one (tmux), its screen read
 * back mid-epoch and after Ctrl-C. Log lines must be readable text, never JSON; the progress bar
 * one line at the bottom, redrawn in place; its ETA what its own rate says; Ctrl-C's `^C` and the
 * lines logged after it must not end up on the bar's line.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { requireBinary } from '../helpers/binaries.js';
import { bin, tempDir } from '../helpers/gradfleet.js';
import { until } from '../helpers/wait.js';

const dir = tempDir();
const socket = `gf-terminal-${process.pid}`;
const tmux = (...args: string[]) =>
  execFileSync(requireBinary('tmux'), ['-L', socket, ...args], { encoding: 'utf8' });
const screen = () =>
  tmux('capture-pane', '-p', '-t', 'gf')
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
afterAll(() => {
  try {
    tmux('kill-server');
  } catch {
    // already gone
  }
});

const BAR = /^epoch 1 \|[█░]+\| (\d+)\/60000 samples \| (\d+) samples\/s \| loss [\d.]+ \| ETA (\S+)$/;

/** "6m23s" → 383, "1h06m" → 3960, "9s" → 9. */
function seconds(eta: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(eta);
  if (!m || eta === '') throw new Error(`not a duration: ${eta}`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

function expectReadable(lines: string[]): void {
  expect(
    lines.filter((l) => l.includes('{"level"')),
    'JSON log lines on a terminal',
  ).toEqual([]);
  expect(
    lines.filter((l) => /\^C./.test(l)),
    'text written after an echoed ^C',
  ).toEqual([]);
  expect(
    lines.filter((l) => /\|[█░]+\|/.test(l) && !BAR.test(l)),
    'a bar line with something else on it',
  ).toEqual([]);
}

/** The one live bar, last on screen, and the ETA it shows against the one its own numbers give. */
function barOf(lines: string[]): { done: number; rate: number; eta: number; expected: number } {
  const bars = lines.filter((l) => BAR.test(l));
  expect(bars, `one bar line:\n${lines.join('\n')}`).toHaveLength(1);
  expect(lines.at(-1)).toBe(bars[0]);
  const [, done, rate, eta] = BAR.exec(bars[0])!;
  return {
    done: Number(done),
    rate: Number(rate),
    eta: seconds(eta),
    expected: (60000 - Number(done)) / Number(rate),
  };
}

describe('on a terminal', () => {
  it('shows readable log lines above one progress bar with a sane ETA, and Ctrl-C leaves a clean screen', async () => {
    const command = `${process.execPath} ${bin} train --model mnist-small --workers 2 --backend wasm --out ${dir}/run; echo "exit=$?"; sleep 120`;
    tmux('new-session', '-d', '-s', 'gf', '-x', '200', '-y', '50', command);

    await until('the first bar', async () => screen().some((l) => BAR.test(l)), 90_000);
    // Some seconds into the epoch, so that the rate window holds steady steps, not the warm-up.
    await new Promise((r) => setTimeout(r, 8000));
    const first = screen();
    expectReadable(first);
    expect(first).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\[\d\d:\d\d:\d\d\] INFO \(coordinator\): coordinator listening on ws:\/\//),
      ]),
    );
    const a = barOf(first);
    await new Promise((r) => setTimeout(r, 3000));
    const later = screen();
    expectReadable(later);
    const b = barOf(later);
    console.log(
      `terminal: bar at ${a.done} samples, ${a.rate}/s, ETA ${a.eta} s (rate says ${a.expected.toFixed(0)}); 3 s later ${b.done}, ETA ${b.eta} s (rate says ${b.expected.toFixed(0)})`,
    );
    for (const bar of [a, b]) {
      expect(bar.rate).toBeGreaterThan(0);
      // Rounding of the shown rate and of the ETA, and the step the two were taken at, allow a little slack.
      expect(Math.abs(bar.eta - bar.expected)).toBeLessThanOrEqual(0.15 * bar.expected + 3);
    }
    expect(b.done).toBeGreaterThan(a.done);

    tmux('send-keys', '-t', 'gf', 'C-c');
    const after = await until(
      'the run to exit after Ctrl-C',
      async () => {
        const lines = screen();
        return lines.some((l) => l.startsWith('exit=')) && lines;
      },
      60_000,
    );
    console.log(`terminal after Ctrl-C:\n${after.join('\n')}`);
    expectReadable(after);
    expect(after.at(-1)).toBe('exit=0');
    expect(after).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^\[\d\d:\d\d:\d\d\] WARN \(coordinator\): interrupted: finishing the current step and writing a checkpoint/,
        ),
        expect.stringMatching(/^\[\d\d:\d\d:\d\d\] INFO \(coordinator\): done: \d+ steps/),
      ]),
    );
    expect(
      after.filter((l) => / (WARN|ERROR) /.test(l) && !/interrupted: finishing/.test(l)),
      'warnings besides the interruption',
    ).toEqual([]);
  }, 180_000);
});
