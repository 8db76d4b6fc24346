import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  renderConfusionMatrix,
  renderTrainingCurves,
  writeSvg,
  type CurvePoint,
} from '../../training/report/index.js';

/** Well-formed enough for any SVG viewer: one root, balanced tags, quoted attributes, escaped text. */
function expectWellFormed(svg: string): void {
  expect(svg.startsWith('<svg')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  expect(svg).not.toMatch(/NaN|undefined|Infinity|null/);
  const badEntity = /&(?!(?:amp|lt|gt|quot|apos);)/;
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<>]*")*)\s*(\/?)>/g;
  const stack: string[] = [];
  let roots = 0;
  let last = 0;
  for (let m = tag.exec(svg); m; m = tag.exec(svg)) {
    const between = svg.slice(last, m.index);
    expect(between, `stray markup before offset ${m.index}`).not.toMatch(/[<>]/);
    expect(between).not.toMatch(badEntity);
    expect(m[3]).not.toMatch(badEntity);
    const [, closing, name, , selfClosing] = m;
    if (closing) {
      expect(stack.pop(), `</${name}> at offset ${m.index}`).toBe(name);
    } else {
      if (stack.length === 0) roots++;
      if (!selfClosing) stack.push(name);
    }
    last = tag.lastIndex;
  }
  expect(svg.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
}

/** data-series → the `d` attribute of that series' line. */
function seriesPaths(svg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of svg.matchAll(/<path class="series" data-series="([^"]+)" d="([^"]+)"/g)) {
    expect(out.has(m[1]), `one path per series (${m[1]})`).toBe(false);
    out.set(m[1], m[2]);
  }
  return out;
}

const pointCount = (d: string) => (d.match(/[ML]/g) ?? []).length;
const subpathCount = (d: string) => (d.match(/M/g) ?? []).length;

function dotCount(svg: string, series: string): number {
  const group = svg.match(new RegExp(`<g class="points" data-series="${series}">(.*?)</g>`));
  return group ? (group[1].match(/<circle /g) ?? []).length : 0;
}

function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** A text's box, from its anchor and font size (an average glyph is ~0.6 em wide, a bold one ~0.65). */
function textBox(attrs: string, content: string): Box {
  const num = (name: string, fallback: number) => {
    const m = new RegExp(`\\b${name}="([\\d.-]+)"`).exec(attrs);
    return m ? Number(m[1]) : fallback;
  };
  const size = num('font-size', 12);
  const width = content.length * size * (attrs.includes('font-weight="bold"') ? 0.65 : 0.6);
  const x = num('x', 0);
  const y = num('y', 0);
  const left = attrs.includes('text-anchor="middle"')
    ? x - width / 2
    : attrs.includes('text-anchor="end"')
      ? x - width
      : x;
  return { left, right: left + width, top: y - size, bottom: y + size * 0.25 };
}

const overlaps = (a: Box, b: Box) =>
  a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

/** Each legend's box: its lines and labels together. */
function legendBoxes(svg: string): Box[] {
  return [...svg.matchAll(/<g class="legend">(.*?)<\/g><\/g>/g)].map((legend) => {
    const boxes: Box[] = [
      ...[...legend[1].matchAll(/<line x1="([\d.-]+)" y1="([\d.-]+)" x2="([\d.-]+)"/g)].map((m) => ({
        left: Number(m[1]),
        right: Number(m[3]),
        top: Number(m[2]) - 4,
        bottom: Number(m[2]) + 4,
      })),
      ...[...legend[1].matchAll(/<text([^>]*)>([^<]*)<\/text>/g)].map((m) => textBox(m[1], m[2])),
    ];
    return {
      left: Math.min(...boxes.map((b) => b.left)),
      right: Math.max(...boxes.map((b) => b.right)),
      top: Math.min(...boxes.map((b) => b.top)),
      bottom: Math.max(...boxes.map((b) => b.bottom)),
    };
  });
}

/** The panels' bold headings ("Loss", "Train loss per step"...) and their boxes. */
function headingBoxes(svg: string): { heading: string; box: Box }[] {
  return [...svg.matchAll(/<text([^>]*font-size="14" font-weight="bold"[^>]*)>([^<]*)<\/text>/g)].map(
    (m) => ({
      heading: m[2],
      box: textBox(m[1], m[2]),
    }),
  );
}

/** The y values a series' path goes through, in SVG coordinates. */
function pathYs(d: string): number[] {
  return [...d.matchAll(/[ML][\d.-]+,([\d.-]+)/g)].map((m) => Number(m[1]));
}

function history(epochs: number): CurvePoint[] {
  return Array.from({ length: epochs }, (_, i) => ({
    epoch: i + 1,
    trainLoss: 0.5 / (i + 1),
    testLoss: 0.55 / (i + 1),
    trainAccuracy: 0.95 + 0.008 * i,
    testAccuracy: 0.955 + 0.007 * i,
  }));
}

describe('renderTrainingCurves', () => {
  it('draws one line per series with a dot for every epoch', () => {
    const svg = renderTrainingCurves(history(5));
    expectWellFormed(svg);
    const paths = seriesPaths(svg);
    expect([...paths.keys()].sort()).toEqual(['test-accuracy', 'test-loss', 'train-accuracy', 'train-loss']);
    for (const [id, d] of paths) {
      expect(pointCount(d), id).toBe(5);
      expect(subpathCount(d), id).toBe(1);
      expect(dotCount(svg, id), id).toBe(5);
    }
    expect(svg).toContain('<g class="panel" data-panel="loss">');
    expect(svg).toContain('<g class="panel" data-panel="accuracy">');
    const labels = texts(svg);
    expect(labels).toEqual(
      expect.arrayContaining(['Training curves', 'Loss', 'Accuracy', 'epoch', 'train', 'test', '1', '5']),
    );
  });

  it('ranges the accuracy axis to the data, as percentages, with room below the lowest point', () => {
    const accuracies = [0.951, 0.97, 0.985, 0.993, 1];
    const points = accuracies.map((a, i) => ({
      epoch: i + 1,
      trainLoss: 1 - a,
      trainAccuracy: a,
      testAccuracy: a - 0.001,
    }));
    const percents = texts(renderTrainingCurves(points))
      .filter((t) => t.endsWith('%'))
      .map((t) => Number.parseFloat(t));
    // 95.0% would put the 95.1% point on the axis floor, where it reads as clipped.
    expect(percents).toEqual([94, 95, 96, 97, 98, 99, 100]);
  });

  it('keeps every point inside its panel, whatever the values', () => {
    const extremes: number[][] = [
      [1e-30, 2e-30, 3e-30],
      [1e300, -1e300, 5e299],
      [1.7e308, -1.7e308],
      [0, 0, 0],
      [-5, -5],
      [7],
      [1e15, 1e15 + 1],
      // biome-ignore lint/suspicious/noApproximativeNumericConstant: a typical first loss of 10 classes, not ln 10 itself
      [2.302, 0.0001, 0.5],
      Array.from({ length: 200_000 }, (_, i) => Math.sin(i) * 10 ** (i % 7)),
    ];
    for (const values of extremes) {
      const points = values.slice(0, 50).map((v, i) => ({
        epoch: i + 1,
        trainLoss: v,
        testLoss: v / 2,
        trainAccuracy: 0.9 + (i % 3) * 0.05,
        testAccuracy: 0.95,
      }));
      const svg = renderTrainingCurves(points, { steps: values.map((loss, i) => ({ step: i + 1, loss })) });
      expectWellFormed(svg);
      for (const panel of svg.matchAll(/<g class="panel" data-panel="([^"]+)">([\s\S]*?)\n<\/g>/g)) {
        const frame = /<path d="M([\d.-]+),([\d.-]+)V([\d.-]+)H([\d.-]+)" fill="none" stroke="#444"/.exec(
          panel[2],
        );
        expect(frame, panel[1]).not.toBeNull();
        const [left, top, bottom, right] = frame!.slice(1).map(Number);
        const coords = [...panel[2].matchAll(/data-series="[^"]+" d="([^"]+)"/g)]
          .flatMap((m) => [...m[1].matchAll(/[ML]([\d.-]+),([\d.-]+)/g)])
          .map((m) => [Number(m[1]), Number(m[2])]);
        const dots = [...panel[2].matchAll(/<g class="points"[^>]*>(.*?)<\/g>/g)]
          .flatMap((g) => [...g[1].matchAll(/<circle cx="([\d.-]+)" cy="([\d.-]+)"/g)])
          .map((m) => [Number(m[1]), Number(m[2])]);
        expect(coords.length, `${panel[1]} for ${values.slice(0, 3)}`).toBeGreaterThan(0);
        for (const [x, y] of [...coords, ...dots]) {
          expect(x, `${panel[1]} x for ${values.slice(0, 3)}`).toBeGreaterThanOrEqual(left - 0.01);
          expect(x).toBeLessThanOrEqual(right + 0.01);
          expect(y, `${panel[1]} y for ${values.slice(0, 3)}`).toBeGreaterThanOrEqual(top - 0.01);
          expect(y, `${panel[1]} y for ${values.slice(0, 3)}`).toBeLessThanOrEqual(bottom + 0.01);
        }
      }
    }
  });

  it('draws the loss of every step, faint, with a smoothed line through it', () => {
    const steps = Array.from({ length: 300 }, (_, i) => ({
      step: i + 1,
      loss: 2.3 * Math.exp(-i / 60) + (i % 2 ? 0.2 : -0.2),
    }));
    steps[100] = { step: 101, loss: Number.NaN };
    const svg = renderTrainingCurves(history(2), { steps });
    expectWellFormed(svg);
    const paths = seriesPaths(svg);
    expect(pointCount(paths.get('step-loss')!)).toBe(299);
    expect(subpathCount(paths.get('step-loss')!)).toBe(2);
    expect(svg).toMatch(
      /data-series="step-loss" d="[^"]+" fill="none" stroke="#1f77b4" stroke-width="1" stroke-opacity="0.3"/,
    );
    // Smoothing takes out the ±0.2 zig-zag: the smoothed line moves far less from point to point.
    const ys = (id: string) =>
      [...paths.get(id)!.matchAll(/[ML][\d.-]+,([\d.-]+)/g)].map((m) => Number(m[1]));
    const wiggle = (v: number[]) => v.slice(1).reduce((a, y, i) => a + Math.abs(y - v[i]), 0);
    expect(wiggle(ys('step-loss-smoothed'))).toBeLessThan(wiggle(ys('step-loss')) / 4);
    expect(texts(svg)).toEqual(expect.arrayContaining(['Train loss per step', 'step', 'Loss', 'Accuracy']));
  });

  it('thins a long per-step curve for drawing, the axis still covering every step', () => {
    const steps = Array.from({ length: 50_000 }, (_, i) => ({ step: i + 1, loss: 1 / (i + 1) }));
    const svg = renderTrainingCurves([], { steps });
    expect(pointCount(seriesPaths(svg).get('step-loss')!)).toBeLessThanOrEqual(3001);
    expect(texts(svg)).toContain('50000');
  });

  it('escapes the title', () => {
    const svg = renderTrainingCurves(history(3), { title: 'loss <&> "accuracy"' });
    expectWellFormed(svg);
    expect(svg).toContain('loss &lt;&amp;&gt; &quot;accuracy&quot;');
    expect(svg).not.toContain('<&>');
  });

  it('draws a single epoch as one point per series', () => {
    const svg = renderTrainingCurves(history(1));
    expectWellFormed(svg);
    const paths = seriesPaths(svg);
    expect(paths.size).toBe(4);
    for (const [id, d] of paths) {
      expect(pointCount(d), id).toBe(1);
      expect(dotCount(svg, id), id).toBe(1);
    }
  });

  it('leaves out test series that were never measured', () => {
    const svg = renderTrainingCurves(
      history(4).map(({ epoch, trainLoss, trainAccuracy }) => ({ epoch, trainLoss, trainAccuracy })),
    );
    expectWellFormed(svg);
    const paths = seriesPaths(svg);
    expect([...paths.keys()].sort()).toEqual(['train-accuracy', 'train-loss']);
    expect(pointCount(paths.get('train-loss')!)).toBe(4);
    expect(texts(svg)).not.toContain('test');
  });

  it('joins the test line across epochs it was not measured in', () => {
    const points = history(6).map((p) =>
      p.epoch % 2 === 0 ? p : { ...p, testLoss: undefined, testAccuracy: undefined },
    );
    const paths = seriesPaths(renderTrainingCurves(points));
    expect(pointCount(paths.get('test-loss')!)).toBe(3);
    expect(subpathCount(paths.get('test-loss')!)).toBe(1);
    expect(pointCount(paths.get('train-loss')!)).toBe(6);
  });

  it('skips non-finite values, breaking the line there', () => {
    const points = history(6);
    points[2] = { ...points[2], trainLoss: Number.NaN, testAccuracy: Number.POSITIVE_INFINITY };
    points[3] = { ...points[3], trainLoss: Number.POSITIVE_INFINITY };
    const svg = renderTrainingCurves(points);
    expectWellFormed(svg);
    const paths = seriesPaths(svg);
    expect(pointCount(paths.get('train-loss')!)).toBe(4);
    expect(subpathCount(paths.get('train-loss')!)).toBe(2);
    expect(pointCount(paths.get('test-accuracy')!)).toBe(5);
    expect(dotCount(svg, 'train-loss')).toBe(4);
  });

  it('renders empty and all-non-finite histories without a line', () => {
    for (const h of [[], [{ epoch: 1, trainLoss: Number.NaN, trainAccuracy: Number.NaN }]]) {
      const svg = renderTrainingCurves(h);
      expectWellFormed(svg);
      expect(seriesPaths(svg).size).toBe(0);
      expect(texts(svg)).toContain('no data');
    }
  });
});

describe('renderTrainingCurves: legends, short runs, smoothing', () => {
  const falling = (n: number, noise = 0.2) =>
    Array.from({ length: n }, (_, i) => ({
      step: i + 1,
      loss: 2.3 * Math.exp(-i / 25) + 0.1 + (i % 2 ? noise : -noise) / 4,
    }));

  it('draws no legend over a panel heading', () => {
    for (const [epochs, steps] of [
      [3, 0],
      [2, 300],
      [5, 2000],
      [1, 469],
      [0, 40],
    ]) {
      const svg = renderTrainingCurves(history(epochs), steps ? { steps: falling(steps) } : {});
      const headings = headingBoxes(svg);
      const legends = legendBoxes(svg);
      expect(headings.length, `${epochs} epochs, ${steps} steps`).toBeGreaterThan(0);
      expect(legends.length).toBeGreaterThan(0);
      for (const legend of legends) {
        for (const { heading, box } of headings) {
          expect(overlaps(legend, box), `legend over "${heading}" (${epochs} epochs, ${steps} steps)`).toBe(
            false,
          );
        }
      }
    }
  });

  it('draws a one-epoch run as its steps, not as panels of one dot, and says the epoch in words', () => {
    const svg = renderTrainingCurves(history(1), { steps: falling(469) });
    expectWellFormed(svg);
    const paths = seriesPaths(svg);
    expect([...paths.keys()].sort()).toEqual(['step-loss', 'step-loss-smoothed']);
    for (const [id, d] of paths) expect(pointCount(d), id).toBe(469);
    expect(svg).not.toContain('data-panel="loss"');
    expect(svg).not.toContain('data-panel="accuracy"');
    expect(svg).not.toMatch(/<circle /); // no lone dots anywhere
    const summary = texts(svg).find((t) => t.startsWith('Epoch 1:'));
    expect(summary).toBe('Epoch 1: train loss 0.5000, accuracy 95.00% · test loss 0.5500, accuracy 95.50%');
    // still a run of no finished epoch: the steps alone, no empty epoch panels
    const early = renderTrainingCurves([], { steps: falling(50) });
    expect([...seriesPaths(early).keys()].sort()).toEqual(['step-loss', 'step-loss-smoothed']);
    expect(texts(early)).not.toContain('no data');
    // two epochs: the epoch panels are back
    expect(renderTrainingCurves(history(2), { steps: falling(100) })).toContain('data-panel="loss"');
  });

  it('smooths without lagging: a straight fall is drawn on the raw line, and the ends are the raw values', () => {
    // 60 steps falling in a straight line: an EMA of 0.9 trails it by ~9 steps (0.3 in loss)
    const ramp = Array.from({ length: 60 }, (_, i) => ({ step: i + 1, loss: 2.3 - i * (2 / 59) }));
    const paths = seriesPaths(renderTrainingCurves([], { steps: ramp }));
    const raw = pathYs(paths.get('step-loss')!);
    const smoothed = pathYs(paths.get('step-loss-smoothed')!);
    expect(smoothed).toHaveLength(raw.length);
    for (let i = 0; i < raw.length; i++)
      expect(Math.abs(smoothed[i] - raw[i]), `step ${i + 1}`).toBeLessThan(0.02);

    // A noisy exponential fall, as a short run's loss: the smoothed line starts at the first loss, ends at
    // the last, and never strays far above the raw trend.
    const steps = falling(200);
    const svg = renderTrainingCurves([], { steps });
    const noisy = seriesPaths(svg);
    const rawYs = pathYs(noisy.get('step-loss')!);
    const smoothYs = pathYs(noisy.get('step-loss-smoothed')!);
    expect(smoothYs[0]).toBe(rawYs[0]);
    expect(smoothYs.at(-1)).toBe(rawYs.at(-1));
    // the trend without the noise, in SVG y: smaller y is a higher loss
    const frame = /<path d="M([\d.-]+),([\d.-]+)V([\d.-]+)H/.exec(svg)!;
    const [top, bottom] = [Number(frame[2]), Number(frame[3])];
    const pxPerLoss = (bottom - top) / 2.5; // the axis runs 0..2.5
    for (let i = 0; i < steps.length; i++) {
      const trend = 2.3 * Math.exp(-i / 25) + 0.1;
      const smoothedLoss = (bottom - smoothYs[i]) / pxPerLoss;
      expect(Math.abs(smoothedLoss - trend), `step ${i + 1}`).toBeLessThan(0.08);
    }
    expect(texts(svg)).toContain('smoothed (centred mean of 9 steps)');
  });

  it('never gives a loss axis below zero', () => {
    const svg = renderTrainingCurves(history(3), { steps: falling(1400) });
    const labels = texts(svg).filter((t) => /^-?[\d.]+$/.test(t));
    expect(labels.length).toBeGreaterThan(0);
    expect(labels.filter((t) => t.startsWith('-'))).toEqual([]);
  });
});

describe('renderConfusionMatrix', () => {
  // Mostly right, a few confusions that vary by cell so every count is distinct per row.
  const confusion = Array.from({ length: 10 }, (_, t) =>
    Array.from({ length: 10 }, (_, p) => (t === p ? 950 + 3 * t : (t * 7 + p * 3) % 5)),
  );
  const correct = confusion.reduce((s, row, i) => s + row[i], 0);
  const total = confusion.flat().reduce((a, b) => a + b, 0);

  it('draws a cell with its count for every pair of classes', () => {
    const svg = renderConfusionMatrix(confusion);
    expectWellFormed(svg);
    const cells = [...svg.matchAll(/<g class="cell" data-true="(\d+)" data-predicted="(\d+)">(.*?)<\/g>/g)];
    expect(cells).toHaveLength(100);
    for (const [, t, p, body] of cells) {
      expect(body).toMatch(/<rect [^>]*fill="#[0-9a-f]{6}"/);
      expect(texts(body)).toEqual([String(confusion[Number(t)][Number(p)])]);
    }
  });

  it('puts the overall accuracy in the title and each class accuracy beside its row', () => {
    const svg = renderConfusionMatrix(confusion, { title: 'Test set' });
    const expected = `${((100 * correct) / total).toFixed(2)}%`;
    expect(svg).toContain(`<title>Test set — accuracy ${expected} (${correct} of ${total})</title>`);
    expect(texts(svg)[0]).toBe(`Test set — accuracy ${expected} (${correct} of ${total})`);
    const rowAccuracy = [...svg.matchAll(/<text [^>]*class="row-accuracy" data-true="(\d+)"[^>]*>([^<]*)</g)];
    expect(rowAccuracy).toHaveLength(10);
    for (const [, t, shown] of rowAccuracy) {
      const row = confusion[Number(t)];
      expect(shown).toBe(`${((100 * row[Number(t)]) / row.reduce((a, b) => a + b, 0)).toFixed(1)}%`);
    }
  });

  it('shades cells by their share of the row', () => {
    const svg = renderConfusionMatrix([
      [9, 1],
      [5, 5],
    ]);
    const fill = (t: number, p: number) =>
      svg.match(
        new RegExp(
          `data-true="${t}" data-predicted="${p}"><title>[^<]*</title><rect [^>]*fill="(#[0-9a-f]{6})"`,
        ),
      )![1];
    const darkness = (hex: string) =>
      765 - [1, 3, 5].reduce((s, i) => s + Number.parseInt(hex.slice(i, i + 2), 16), 0);
    expect(darkness(fill(0, 0))).toBeGreaterThan(darkness(fill(1, 1)));
    expect(fill(1, 0)).toBe(fill(1, 1));
    expect(darkness(fill(1, 1))).toBeGreaterThan(darkness(fill(0, 1)));
  });

  it('escapes labels and the title, and copes with an empty class', () => {
    const svg = renderConfusionMatrix(
      [
        [3, 1],
        [0, 0],
      ],
      { title: 'a <&> b', labels: ['<cat>', 'dog & co'] },
    );
    expectWellFormed(svg);
    expect(svg).toContain('a &lt;&amp;&gt; b — accuracy 75.00% (3 of 4)');
    expect(texts(svg)).toEqual(expect.arrayContaining(['&lt;cat&gt;', 'dog &amp; co', '75.0%', '–']));
  });

  it('renders a matrix with no samples', () => {
    for (const m of [
      [],
      [
        [0, 0],
        [0, 0],
      ],
    ]) {
      const svg = renderConfusionMatrix(m);
      expectWellFormed(svg);
      expect(svg).toContain('no samples');
    }
  });
});

describe('writeSvg', () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('writes the file atomically, replacing an old one and leaving no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gradfleet-report-'));
    dirs.push(dir);
    const path = join(dir, 'reports', 'curves.svg');
    await writeSvg(path, '<svg/>');
    const svg = renderTrainingCurves(history(2));
    await writeSvg(path, svg);
    expect(await readFile(path, 'utf8')).toBe(svg);
    expect(await readdir(join(dir, 'reports'))).toEqual(['curves.svg']);
  });
});
