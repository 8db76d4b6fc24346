/**
 * Loss and accuracy per epoch as one SVG: two panels side by side, train and test series in
 * each, every epoch's value marked with a dot. A missing test value (not evaluated that epoch)
 * is skipped and the line joins the epochs either side; a non-finite value (a diverged loss) is
 * skipped too, but the line breaks there rather than drawing through it. Nothing non-finite
 * ever reaches the SVG.
 */
import { el, escapeXml, fmt, svgDocument, text } from './svg.js';

export interface CurvePoint {
  /** 1-based. */
  epoch: number;
  trainLoss: number;
  testLoss?: number;
  /** Fraction in [0, 1]. */
  trainAccuracy: number;
  /** Fraction in [0, 1]. */
  testAccuracy?: number;
}

export interface TrainingCurvesOptions {
  title?: string;
}

const WIDTH = 960;
const HEIGHT = 400;
const TITLE_HEIGHT = 40;
const PANEL_GAP = 40;
const MARGIN = { top: TITLE_HEIGHT + 30, right: 20, bottom: 80, left: 70 };
/** Each panel has its own left margin for its y tick labels. */
const PANEL_WIDTH = (WIDTH - 2 * MARGIN.left - PANEL_GAP - MARGIN.right) / 2;
const PANEL_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom;
const TARGET_Y_TICKS = 5;
const MAX_X_TICKS = 10;

const TRAIN_COLOUR = '#1f77b4';
const TEST_COLOUR = '#ff7f0e';

interface Series {
  id: string;
  label: string;
  colour: string;
  dashed: boolean;
  /** `newSegment` starts a new subpath: the first point, and any after a non-finite value. */
  points: { epoch: number; value: number; newSegment: boolean }[];
}

interface Axis {
  min: number;
  max: number;
  ticks: number[];
  decimals: number;
}

export function renderTrainingCurves(history: CurvePoint[], opts: TrainingCurvesOptions = {}): string {
  const title = opts.title ?? 'Training curves';
  const points = history.filter((p) => Number.isFinite(p.epoch)).sort((a, b) => a.epoch - b.epoch);
  const series = (key: keyof CurvePoint, id: string, label: string, colour: string, dashed: boolean): Series => {
    const out: Series = { id, label, colour, dashed, points: [] };
    let broken = true;
    for (const p of points) {
      const value = p[key];
      if (value === undefined) continue; // not measured this epoch: connect across it
      if (Number.isFinite(value)) {
        out.points.push({ epoch: p.epoch, value, newSegment: broken });
        broken = false;
      } else {
        broken = true; // NaN or ±Infinity: leave a visible gap
      }
    }
    return out;
  };

  const xAxis = epochAxis(points.map((p) => p.epoch));
  const lossPanel = renderPanel({
    left: MARGIN.left,
    heading: 'Loss',
    xAxis,
    yAxis: (values) => valueAxis(values, false),
    yLabel: (v, d) => fmt(v, d),
    series: [
      series('trainLoss', 'train-loss', 'train', TRAIN_COLOUR, false),
      series('testLoss', 'test-loss', 'test', TEST_COLOUR, true),
    ],
  });
  const accuracyPanel = renderPanel({
    left: MARGIN.left + PANEL_WIDTH + PANEL_GAP + MARGIN.left,
    heading: 'Accuracy',
    xAxis,
    yAxis: (values) => valueAxis(values, true),
    yLabel: (v, d) => `${fmt(v * 100, Math.max(0, d - 2))}%`,
    series: [
      series('trainAccuracy', 'train-accuracy', 'train', TRAIN_COLOUR, false),
      series('testAccuracy', 'test-accuracy', 'test', TEST_COLOUR, true),
    ],
  });

  const heading = text(WIDTH / 2, 26, title, { 'text-anchor': 'middle', 'font-size': 18, 'font-weight': 'bold' });
  return svgDocument({ width: WIDTH, height: HEIGHT, title }, [heading, lossPanel, accuracyPanel].join('\n'));
}

function renderPanel(panel: {
  left: number;
  heading: string;
  xAxis: Axis;
  yAxis: (values: number[]) => Axis;
  yLabel: (value: number, decimals: number) => string;
  series: Series[];
}): string {
  const shown = panel.series.filter((s) => s.points.length > 0);
  const { xAxis } = panel;
  const yAxis = panel.yAxis(shown.flatMap((s) => s.points.map((p) => p.value)));
  const top = MARGIN.top;
  const bottom = top + PANEL_HEIGHT;
  const right = panel.left + PANEL_WIDTH;
  const x = (epoch: number) => panel.left + ((epoch - xAxis.min) / (xAxis.max - xAxis.min)) * PANEL_WIDTH;
  const y = (value: number) => bottom - ((value - yAxis.min) / (yAxis.max - yAxis.min)) * PANEL_HEIGHT;

  const parts: string[] = [];
  parts.push(text(panel.left + PANEL_WIDTH / 2, top - 12, panel.heading, { 'text-anchor': 'middle', 'font-size': 14, 'font-weight': 'bold' }));

  for (const v of yAxis.ticks) {
    parts.push(el('line', { x1: panel.left, y1: y(v), x2: right, y2: y(v), stroke: '#e5e5e5' }));
    parts.push(text(panel.left - 8, y(v) + 4, panel.yLabel(v, yAxis.decimals), { 'text-anchor': 'end', fill: '#444' }));
  }
  for (const e of xAxis.ticks) {
    parts.push(el('line', { x1: x(e), y1: bottom, x2: x(e), y2: bottom + 5, stroke: '#444' }));
    parts.push(text(x(e), bottom + 19, fmt(e), { 'text-anchor': 'middle', fill: '#444' }));
  }
  parts.push(el('path', { d: `M${fmt(panel.left)},${fmt(top)}V${fmt(bottom)}H${fmt(right)}`, fill: 'none', stroke: '#444' }));
  parts.push(text(panel.left + PANEL_WIDTH / 2, bottom + 40, 'epoch', { 'text-anchor': 'middle', fill: '#444' }));

  if (shown.length === 0) {
    parts.push(text(panel.left + PANEL_WIDTH / 2, top + PANEL_HEIGHT / 2, 'no data', { 'text-anchor': 'middle', fill: '#888' }));
  }
  for (const s of shown) {
    parts.push(
      el('path', {
        class: 'series',
        'data-series': s.id,
        d: pathData(s.points, x, y),
        fill: 'none',
        stroke: s.colour,
        'stroke-width': 2,
        'stroke-dasharray': s.dashed ? '6 4' : undefined,
        'stroke-linejoin': 'round',
      }),
    );
    const dots = s.points.map((p) =>
      el('circle', { cx: x(p.epoch), cy: y(p.value), r: 3.5, fill: s.colour, stroke: '#fff', 'stroke-width': 1 },
        el('title', {}, escapeXml(`${s.label}, epoch ${fmt(p.epoch)}: ${panel.yLabel(p.value, yAxis.decimals + 2)}`))),
    );
    parts.push(el('g', { class: 'points', 'data-series': s.id }, dots.join('')));
  }
  parts.push(legend(shown, panel.left, bottom + 58));
  return el('g', { class: 'panel', 'data-panel': panel.heading.toLowerCase() }, `\n${parts.join('\n')}\n`);
}

/** `M`/`L` commands through the points, with a new `M` after each gap. */
function pathData(points: Series['points'], x: (epoch: number) => number, y: (value: number) => number): string {
  return points.map((p) => `${p.newSegment ? 'M' : 'L'}${fmt(x(p.epoch))},${fmt(y(p.value))}`).join('');
}

function legend(series: Series[], left: number, y: number): string {
  let x = left;
  const items = series.map((s) => {
    const item = el('g', { class: 'legend-item' }, [
      el('line', { x1: x, y1: y, x2: x + 24, y2: y, stroke: s.colour, 'stroke-width': 2, 'stroke-dasharray': s.dashed ? '6 4' : undefined }),
      el('circle', { cx: x + 12, cy: y, r: 3.5, fill: s.colour }),
      text(x + 30, y + 4, s.label, { fill: '#222' }),
    ].join(''));
    x += 30 + 8 * s.label.length + 24;
    return item;
  });
  return el('g', { class: 'legend' }, items.join(''));
}

/** Epoch ticks from the first epoch on, at most {@link MAX_X_TICKS}; a lone epoch gets half an epoch either side. */
function epochAxis(epochs: number[]): Axis {
  if (epochs.length === 0) return { min: 0.5, max: 1.5, ticks: [1], decimals: 0 };
  const first = epochs[0];
  const last = epochs[epochs.length - 1];
  if (first === last) return { min: first - 0.5, max: first + 0.5, ticks: [first], decimals: 0 };
  const step = Math.max(1, niceStep((last - first) / (MAX_X_TICKS - 1), true));
  const ticks: number[] = [];
  for (let e = first; e <= last + 1e-9; e += step) ticks.push(e);
  return { min: first, max: last, ticks, decimals: 0 };
}

/**
 * A y axis from nice ticks around the data. Accuracy stays inside [0, 1] so values all above
 * 0.95 give a 95–100% axis rather than a 0–100% one with the interesting part squashed flat.
 */
function valueAxis(values: number[], isFraction: boolean): Axis {
  if (values.length === 0) return makeAxis(0, 1, 0.2);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-12) {
    const pad = isFraction ? 0.01 : Math.abs(hi) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / TARGET_Y_TICKS, false);
  let min = Math.floor(lo / step + 1e-9) * step;
  let max = Math.ceil(hi / step - 1e-9) * step;
  if (isFraction && lo >= 0 && hi <= 1) {
    min = Math.max(0, min);
    max = Math.min(1, max);
  }
  if (max - min < step) max = min + step;
  return makeAxis(min, max, step);
}

function makeAxis(min: number, max: number, step: number): Axis {
  const ticks: number[] = [];
  const count = Math.round((max - min) / step);
  for (let i = 0; i <= count; i++) ticks.push(min + i * step);
  return { min, max, ticks, decimals: Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) };
}

/** The 1, 2 or 5 × 10^k step closest above `raw` (integers only when `integer`). */
function niceStep(raw: number, integer: boolean): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude - 1e-9; // 0.05 / 5 is 0.010000000000000009: still a step of 0.01
  const step = (residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 5 ? 5 : 10) * magnitude;
  return integer ? Math.max(1, Math.round(step)) : step;
}
