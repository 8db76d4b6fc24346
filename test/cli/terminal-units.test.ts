/**
 * The pieces of terminal output that need no terminal: the rate window, durations, bars, colour choice, the
 * status line.
 */
import { readFileSync, mkdtempSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RateWindow, formatDuration } from '../../cli/rate-window.js';
import { renderBar } from '../../cli/progress.js';
import { colourEnabled, tableStyle } from '../../common/colour.js';
import { StatusLine } from '../../common/status-line.js';

describe('RateWindow', () => {
  it('follows the recent rate, not the mean since the start', () => {
    const w = new RateWindow(30_000);
    // A slow minute of warm-up at 10/s, then 100/s.
    for (let t = 0; t <= 60_000; t += 1000) w.observe(t, t / 100);
    for (let t = 61_000; t <= 120_000; t += 1000) w.observe(t, 600 + (t - 60_000) / 10);
    const { rate, etaSeconds } = w.estimate(10_000);
    expect(rate).toBeCloseTo(100, 6);
    expect(etaSeconds).toBeCloseTo((10_000 - 6600) / 100, 6);
  });

  it('moves its ETA as samples go by at a steady rate (132/s: 512 more samples is 3.9 s less)', () => {
    const w = new RateWindow();
    for (let t = 0; t <= 20_000; t += 250) w.observe(t, Math.round((t / 1000) * 132));
    const before = w.estimate(60_000).etaSeconds!;
    for (let t = 20_250; t <= 24_000; t += 250) w.observe(t, Math.round((t / 1000) * 132));
    const after = w.estimate(60_000).etaSeconds!;
    expect(before).toBeCloseTo((60_000 - 2640) / 132, 0);
    expect(before - after).toBeCloseTo(4, 0);
  });

  it('knows no rate until it has a span to measure', () => {
    const w = new RateWindow();
    w.observe(0, 0);
    expect(w.estimate(100)).toEqual({ rate: 0, etaSeconds: null });
    w.observe(50, 10);
    expect(w.estimate(100)).toEqual({ rate: 0, etaSeconds: null });
    w.observe(1000, 10);
    expect(w.estimate(100).rate).toBeCloseTo(10, 6);
  });
});

describe('formatDuration', () => {
  it('writes seconds, minutes and hours', () => {
    expect(formatDuration(9.4)).toBe('9s');
    expect(formatDuration(383)).toBe('6m23s');
    expect(formatDuration(3960)).toBe('1h06m');
    expect(formatDuration(null)).toBe('…');
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe('…');
  });
});

describe('renderBar', () => {
  it('fills in proportion and stays in bounds', () => {
    expect(renderBar('epoch 1', 30, 60, 'samples', 132.4, 383, 'loss 0.5')).toBe(
      'epoch 1 |████████████░░░░░░░░░░░░| 30/60 samples | 132 samples/s | loss 0.5 | ETA 6m23s',
    );
    expect(renderBar('e', 90, 60, 'x', 1, 0, '')).toContain(`|${'█'.repeat(24)}|`);
  });
});

describe('colours', () => {
  it('only on a terminal, and never with NO_COLOR', () => {
    expect(colourEnabled({ isTTY: true }, {})).toBe(true);
    expect(colourEnabled({ isTTY: false }, {})).toBe(false);
    expect(colourEnabled({}, {})).toBe(false);
    expect(colourEnabled({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(colourEnabled({ isTTY: true }, { NO_COLOR: '' })).toBe(true); // the convention: set and non-empty
    expect(tableStyle({ isTTY: false })).toEqual({ head: [], border: [] });
  });
});

describe('StatusLine', () => {
  const capture = (isTTY: boolean, use: (s: StatusLine) => void) => {
    const file = join(mkdtempSync(join(tmpdir(), 'gf-status-')), 'out');
    const fd = openSync(file, 'w');
    use(new StatusLine(fd, isTTY, () => 40));
    closeSync(fd);
    return readFileSync(file, 'utf8');
  };

  it('on a terminal, writes log lines above the status and redraws it below them', () => {
    const out = capture(true, (s) => {
      s.show('bar 1');
      s.log('hello');
      s.show('bar 2');
      s.keep();
      s.log('after');
    });
    expect(out).toBe('\r\x1b[2Kbar 1\r\x1b[2Khello\nbar 1\r\x1b[2Kbar 2\r\x1b[2Kbar 2\nafter\n');
  });

  it('cuts a status wider than the terminal, so that the next redraw can clear it', () => {
    const out = capture(true, (s) => s.show('x'.repeat(100)));
    expect(out).toBe(`\r\x1b[2K${'x'.repeat(38)}…`);
  });

  it('off a terminal, passes log lines through and shows no status', () => {
    const out = capture(false, (s) => {
      s.show('bar');
      s.log('one');
      s.log('two\n');
    });
    expect(out).toBe('one\ntwo\n');
  });
});
