/**
 * A confusion matrix (`confusion[true][predicted]`, as `evaluate` returns it) as an SVG heat map:
 * true label on rows, predicted on columns, each cell shaded by its share of its row and showing
 * its count, each row's accuracy (recall) at its right and the overall accuracy in the title.
 */
import { el, escapeXml, fmt, formatPercent, svgDocument, text } from './svg.js';

export interface ConfusionMatrixOptions {
  title?: string;
  /** Class names, by index; missing ones default to the index. */
  labels?: string[];
}

const TITLE_Y = 28;
const GRID_TOP = 84;
const LEFT_PAD = 44;
const ACCURACY_WIDTH = 76;
const RIGHT_PAD = 16;
const SCALE_HEIGHT = 72;
const SCALE_STEPS = 10;

export function renderConfusionMatrix(confusion: number[][], opts: ConfusionMatrixOptions = {}): string {
  const n = Math.max(confusion.length, ...confusion.map((row) => row.length));
  const count = (t: number, p: number) => {
    const v = confusion[t]?.[p];
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
  };
  const label = (i: number) => opts.labels?.[i] ?? String(i);
  const rowSums = Array.from({ length: n }, (_, t) => sumOf(n, (p) => count(t, p)));
  const total = rowSums.reduce((a, b) => a + b, 0);
  const correct = sumOf(n, (i) => count(i, i));

  const accuracy =
    total > 0
      ? `accuracy ${formatPercent(correct / total)} (${fmt(correct)} of ${fmt(total)})`
      : 'no samples';
  const title = `${opts.title ?? 'Confusion matrix'} — ${accuracy}`;

  const cell = Math.max(18, Math.min(48, Math.round(440 / Math.max(1, n))));
  const labelWidth = 7 * Math.max(1, ...Array.from({ length: n }, (_, i) => label(i).length)) + 10;
  const gridLeft = LEFT_PAD + labelWidth;
  const gridRight = gridLeft + n * cell;
  const gridBottom = GRID_TOP + n * cell;
  const width = Math.max(gridRight + ACCURACY_WIDTH + RIGHT_PAD, 420, Math.ceil(9.5 * title.length) + 40);
  const height = gridBottom + SCALE_HEIGHT;
  const maxDigits = Math.max(
    1,
    ...rowSums.map((_, t) => Math.max(...Array.from({ length: n }, (_, p) => fmt(count(t, p)).length))),
  );
  const countFont = Math.max(7, Math.min(12, (cell - 4) / (0.62 * maxDigits)));

  const parts: string[] = [];
  parts.push(
    text(width / 2, TITLE_Y, title, { 'text-anchor': 'middle', 'font-size': 16, 'font-weight': 'bold' }),
  );
  parts.push(
    text((gridLeft + gridRight) / 2, GRID_TOP - 30, 'Predicted', {
      'text-anchor': 'middle',
      'font-weight': 'bold',
    }),
  );
  const trueX = 16;
  const trueY = (GRID_TOP + gridBottom) / 2;
  parts.push(
    text(trueX, trueY, 'True', {
      'text-anchor': 'middle',
      'font-weight': 'bold',
      transform: `rotate(-90 ${fmt(trueX)} ${fmt(trueY)})`,
    }),
  );
  parts.push(text(gridRight + 10, GRID_TOP - 10, 'accuracy', { fill: '#444' }));

  for (let i = 0; i < n; i++) {
    parts.push(
      text(gridLeft + (i + 0.5) * cell, GRID_TOP - 10, label(i), { 'text-anchor': 'middle', fill: '#222' }),
    );
    parts.push(
      text(gridLeft - 8, GRID_TOP + (i + 0.5) * cell + 4, label(i), { 'text-anchor': 'end', fill: '#222' }),
    );
  }

  const cells: string[] = [];
  for (let t = 0; t < n; t++) {
    for (let p = 0; p < n; p++) {
      const c = count(t, p);
      const share = rowSums[t] > 0 ? c / rowSums[t] : 0;
      const x = gridLeft + p * cell;
      const y = GRID_TOP + t * cell;
      const tip =
        `true ${label(t)}, predicted ${label(p)}: ${fmt(c)}` +
        (rowSums[t] > 0 ? ` (${formatPercent(share)} of true ${label(t)})` : '');
      cells.push(
        el(
          'g',
          { class: 'cell', 'data-true': t, 'data-predicted': p },
          [
            el('title', {}, escapeXml(tip)),
            el('rect', {
              x,
              y,
              width: cell,
              height: cell,
              fill: heat(share),
              stroke: '#ffffff',
              'stroke-width': 1,
            }),
            text(x + cell / 2, y + cell / 2 + countFont * 0.35, fmt(c), {
              'text-anchor': 'middle',
              'font-size': countFont,
              fill: share >= 0.5 ? '#ffffff' : c === 0 ? '#b0b0b0' : '#222222',
            }),
          ].join(''),
        ),
      );
    }
    const rowAccuracy = rowSums[t] > 0 ? formatPercent(count(t, t) / rowSums[t], 1) : '–';
    cells.push(
      text(gridRight + 10, GRID_TOP + (t + 0.5) * cell + 4, rowAccuracy, {
        class: 'row-accuracy',
        'data-true': t,
        fill: '#222',
      }),
    );
  }
  parts.push(el('g', { class: 'cells' }, `\n${cells.join('\n')}\n`));
  parts.push(
    el('rect', { x: gridLeft, y: GRID_TOP, width: n * cell, height: n * cell, fill: 'none', stroke: '#888' }),
  );
  parts.push(colourScale(gridLeft, gridBottom + 24, Math.max(160, Math.min(n * cell, 320))));

  return svgDocument({ width, height, title }, parts.join('\n'));
}

/** A stepped legend bar from 0% to 100% of the row. */
function colourScale(left: number, top: number, width: number): string {
  const step = width / SCALE_STEPS;
  const swatches = Array.from({ length: SCALE_STEPS }, (_, i) =>
    el('rect', { x: left + i * step, y: top, width: step, height: 10, fill: heat((i + 0.5) / SCALE_STEPS) }),
  );
  return el(
    'g',
    { class: 'scale' },
    [
      ...swatches,
      el('rect', { x: left, y: top, width, height: 10, fill: 'none', stroke: '#888' }),
      text(left, top + 24, '0%', { 'text-anchor': 'start', fill: '#444' }),
      text(left + width / 2, top + 24, 'share of the true class', { 'text-anchor': 'middle', fill: '#444' }),
      text(left + width, top + 24, '100%', { 'text-anchor': 'end', fill: '#444' }),
    ].join(''),
  );
}

/** White through light blue to dark blue as `fraction` goes 0 → 1. */
function heat(fraction: number): string {
  const stops: [number, number, number][] = [
    [247, 251, 255],
    [107, 174, 214],
    [8, 48, 107],
  ];
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(f));
  const t = f - i;
  const channel = (k: number) =>
    Math.round(stops[i][k] + (stops[i + 1][k] - stops[i][k]) * t)
      .toString(16)
      .padStart(2, '0');
  return `#${channel(0)}${channel(1)}${channel(2)}`;
}

function sumOf(n: number, f: (i: number) => number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += f(i);
  return s;
}
