/**
 * Loss and accuracy per epoch as one SVG: two panels side by side, train and test series in
 * each, every epoch's value marked with a dot; above them, when given, the train loss of every
 * step, raw and smoothed. A missing test value (not evaluated that epoch)
 * is skipped and the line joins the epochs either side; a non-finite value (a diverged loss) is
 * skipped too, but the line breaks there rather than drawing through it. Nothing non-finite
 * ever reaches the SVG.
 *
 * Before a second epoch has finished, panels per epoch would hold one dot each: the per-step panel is
 * drawn alone then, taller, with the finished epoch's values written under it.
 */
import { el, escapeXml, fmt, formatPercent, svgDocument, text } from './svg.js';

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
  /**
   * Train loss of every step (the global batch's): drawn faint, with a smoothed line, above the epoch panels.
   */
  steps?: readonly StepLoss[];
}

interface StepLoss {
  step: number;
  loss: number;
}

const WIDTH = 960;
const TITLE_HEIGHT = 40;
const PANEL_GAP = 40;
const MARGIN = { top: TITLE_HEIGHT + 30, right: 20, bottom: 80, left: 70 };
/** Each epoch panel has its own left margin for its y tick labels. */
const PANEL_WIDTH = (WIDTH - 2 * MARGIN.left - PANEL_GAP - MARGIN.right) / 2;
const PANEL_HEIGHT = 250;
/** The per-step panel spans the width, above the two epoch panels. */
const STEP_PANEL = { width: WIDTH - MARGIN.left - MARGIN.right, height: 220, alone: 320, below: 100 };
/** A panel's legend sits this far below its frame, clear of the axis name and the next panel's heading. */
const LEGEND_BELOW = 58;
const TARGET_Y_TICKS = 5;
const MAX_X_TICKS = 10;
/** Raw points drawn at most; longer runs are thinned evenly (the axis still covers every point). */
const MAX_RAW_POINTS = 3000;
/**
 * The smoothed per-step line is a centred mean over up to this many steps on each side. Centred, it never
 * lags: an exponential average trails a falling loss by ~1/(1-β) steps, which on a short run is the whole
 * steep part. Narrow, it keeps that steep part's bend, which happens within the first ~100 steps whatever
 * the run's length.
 */
const MAX_HALF_WINDOW = 10;
/** A short run gets a window of this share of its steps on each side, so its few points still show. */
const HALF_WINDOW_SHARE = 1 / 50;
/** Share of the value range kept free above and below the data, so no point sits on the frame. */
const Y_PADDING = 0.04;

const TRAIN_COLOUR = '#1f77b4';
const TEST_COLOUR = '#ff7f0e';

interface Series {
  id: string;
  label: string;
  colour: string;
  dashed: boolean;
  /** Faint, thin and without dots (the raw per-step loss). */
  faint?: boolean;
  /** `newSegment` starts a new subpath: the first point, and any after a non-finite value. */
  points: { x: number; value: number; newSegment: boolean }[];
}

interface Axis {
  min: number;
  max: number;
  /** Between ticks; positions are computed in these units. */
  step: number;
  ticks: number[];
  decimals: number;
}

interface PanelFrame {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** The finite values of `values` as a series; a non-finite one breaks the line, an absent one is skipped. */
function seriesOf(
  points: readonly { x: number; value: number | undefined }[],
  s: Omit<Series, 'points'>,
): Series {
  const out: Series = { ...s, points: [] };
  let broken = true;
  for (const p of points) {
    if (p.value === undefined) continue; // not measured this epoch: connect across it
    if (Number.isFinite(p.value)) {
      out.points.push({ x: p.x, value: p.value, newSegment: broken });
      broken = false;
    } else {
      broken = true; // NaN or ±Infinity: leave a visible gap
    }
  }
  return out;
}

export function renderTrainingCurves(history: CurvePoint[], opts: TrainingCurvesOptions = {}): string {
  const title = opts.title ?? 'Training curves';
  const points = history.filter((p) => Number.isFinite(p.epoch)).sort((a, b) => a.epoch - b.epoch);
  const steps = opts.steps?.filter((s) => Number.isFinite(s.step)).sort((a, b) => a.step - b.step);
  const parts = [
    text(WIDTH / 2, 26, title, { 'text-anchor': 'middle', 'font-size': 18, 'font-weight': 'bold' }),
  ];
  // One epoch or none: its panels would be lone dots, so the steps say it all, with the epoch in words.
  if (steps && points.length <= 1 && steps.filter((s) => Number.isFinite(s.loss)).length >= 2) {
    parts.push(stepPanel(steps, STEP_PANEL.alone));
    const stepBottom = MARGIN.top + STEP_PANEL.alone;
    if (points.length === 1) parts.push(epochSummary(points[0], stepBottom + LEGEND_BELOW + 30));
    return svgDocument({ width: WIDTH, height: stepBottom + STEP_PANEL.below + 20, title }, parts.join('\n'));
  }

  const byEpoch = (key: keyof CurvePoint) => points.map((p) => ({ x: p.epoch, value: p[key] }));
  const stepPanelHeight = steps ? STEP_PANEL.height + STEP_PANEL.below : 0;
  const epochTop = MARGIN.top + stepPanelHeight;
  const height = epochTop + PANEL_HEIGHT + MARGIN.bottom;
  if (steps) parts.push(stepPanel(steps, STEP_PANEL.height));
  const xAxis = epochAxis(points.map((p) => p.epoch));
  parts.push(
    renderPanel({
      frame: { left: MARGIN.left, top: epochTop, width: PANEL_WIDTH, height: PANEL_HEIGHT },
      heading: 'Loss',
      xName: 'epoch',
      xAxis,
      yAxis: (values) => valueAxis(values, false),
      yLabel: numberLabel,
      series: [
        seriesOf(byEpoch('trainLoss'), {
          id: 'train-loss',
          label: 'train',
          colour: TRAIN_COLOUR,
          dashed: false,
        }),
        seriesOf(byEpoch('testLoss'), { id: 'test-loss', label: 'test', colour: TEST_COLOUR, dashed: true }),
      ],
    }),
  );
  parts.push(
    renderPanel({
      frame: {
        left: MARGIN.left + PANEL_WIDTH + PANEL_GAP + MARGIN.left,
        top: epochTop,
        width: PANEL_WIDTH,
        height: PANEL_HEIGHT,
      },
      heading: 'Accuracy',
      xName: 'epoch',
      xAxis,
      yAxis: (values) => valueAxis(values, true),
      yLabel: (v, d) => `${fmt(v * 100, Math.max(0, d - 2))}%`,
      series: [
        seriesOf(byEpoch('trainAccuracy'), {
          id: 'train-accuracy',
          label: 'train',
          colour: TRAIN_COLOUR,
          dashed: false,
        }),
        seriesOf(byEpoch('testAccuracy'), {
          id: 'test-accuracy',
          label: 'test',
          colour: TEST_COLOUR,
          dashed: true,
        }),
      ],
    }),
  );
  return svgDocument({ width: WIDTH, height, title }, parts.join('\n'));
}

/** One finished epoch in words: what its two panels would have shown as lone dots. */
function epochSummary(p: CurvePoint, y: number): string {
  const loss = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? v.toPrecision(4) : '–');
  const part = (name: string, lossValue: number | undefined, accuracy: number | undefined) =>
    `${name} loss ${loss(lossValue)}, accuracy ${formatPercent(accuracy ?? Number.NaN)}`;
  const measured = [part('train', p.trainLoss, p.trainAccuracy)];
  if (p.testLoss !== undefined || p.testAccuracy !== undefined)
    measured.push(part('test', p.testLoss, p.testAccuracy));
  return el(
    'g',
    { class: 'epoch-summary' },
    text(MARGIN.left, y, `Epoch ${fmt(p.epoch)}: ${measured.join(' · ')}`, { 'font-size': 14, fill: '#222' }),
  );
}

/** Train loss per step (`steps` sorted, finite steps): every step faint, and its smoothed trend on top. */
function stepPanel(steps: readonly StepLoss[], height: number): string {
  const raw = seriesOf(
    steps.map((s) => ({ x: s.step, value: s.loss })),
    { id: 'step-loss', label: 'train loss per step', colour: TRAIN_COLOUR, dashed: false, faint: true },
  );
  const halfWindow = Math.max(1, Math.min(MAX_HALF_WINDOW, Math.round(steps.length * HALF_WINDOW_SHARE)));
  const smoothed = seriesOf(
    smooth(
      steps.map((s) => ({ x: s.step, value: s.loss })),
      halfWindow,
    ),
    {
      id: 'step-loss-smoothed',
      label: `smoothed (centred mean of ${2 * halfWindow + 1} steps)`,
      colour: TRAIN_COLOUR,
      dashed: false,
    },
  );
  return renderPanel({
    frame: { left: MARGIN.left, top: MARGIN.top, width: STEP_PANEL.width, height },
    heading: 'Train loss per step',
    xName: 'step',
    xAxis: stepAxis(steps.map((s) => s.step)),
    yAxis: (values) => valueAxis(values, false),
    yLabel: numberLabel,
    // The axis covers every raw point; only the drawing is thinned.
    series: [raw, smoothed],
    thin: MAX_RAW_POINTS,
  });
}

/**
 * The mean of the finite values within `halfWindow` points either side, the window narrowing near the ends
 * so that it stays centred: no lag behind a trend, and the first and last values are the raw ones. A
 * non-finite value is passed on as a gap and left out of its neighbours' means.
 */
function smooth(
  points: readonly { x: number; value: number }[],
  halfWindow: number,
): { x: number; value: number }[] {
  const n = points.length;
  // Prefix sums of the finite values and of how many there are.
  const sums = new Float64Array(n + 1);
  const counts = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    const v = points[i].value;
    const finite = Number.isFinite(v);
    sums[i + 1] = sums[i] + (finite ? v : 0);
    counts[i + 1] = counts[i] + (finite ? 1 : 0);
  }
  return points.map((p, i) => {
    if (!Number.isFinite(p.value)) return p;
    const h = Math.min(halfWindow, i, n - 1 - i);
    const count = counts[i + h + 1] - counts[i - h];
    // Values near ±Number.MAX_VALUE overflow a sum: those are drawn as they are.
    const mean = (sums[i + h + 1] - sums[i - h]) / count;
    return { x: p.x, value: Number.isFinite(mean) ? mean : p.value };
  });
}

function numberLabel(v: number, decimals: number): string {
  // Far from 1 a fixed-point label either runs to hundreds of digits or rounds to 0.
  if (v !== 0 && (Math.abs(v) >= 1e6 || decimals > 6)) return v.toPrecision(3);
  return fmt(v, decimals);
}

function renderPanel(panel: {
  frame: PanelFrame;
  heading: string;
  xName: string;
  xAxis: Axis;
  yAxis: (values: number[]) => Axis;
  yLabel: (value: number, decimals: number) => string;
  series: Series[];
  thin?: number;
}): string {
  const shown = panel.series.filter((s) => s.points.length > 0);
  const { xAxis, frame } = panel;
  const yAxis = panel.yAxis(shown.flatMap((s) => s.points.map((p) => p.value)));
  const { left, top, width, height } = frame;
  const bottom = top + height;
  const right = left + width;
  const x = (v: number) => left + fraction(v, xAxis) * width;
  const y = (v: number) => bottom - fraction(v, yAxis) * height;

  const parts: string[] = [];
  parts.push(
    text(left + width / 2, top - 12, panel.heading, {
      'text-anchor': 'middle',
      'font-size': 14,
      'font-weight': 'bold',
    }),
  );

  for (const v of yAxis.ticks) {
    parts.push(el('line', { x1: left, y1: y(v), x2: right, y2: y(v), stroke: '#e5e5e5' }));
    parts.push(
      text(left - 8, y(v) + 4, panel.yLabel(v, yAxis.decimals), { 'text-anchor': 'end', fill: '#444' }),
    );
  }
  for (const e of xAxis.ticks) {
    parts.push(el('line', { x1: x(e), y1: bottom, x2: x(e), y2: bottom + 5, stroke: '#444' }));
    parts.push(text(x(e), bottom + 19, fmt(e), { 'text-anchor': 'middle', fill: '#444' }));
  }
  parts.push(
    el('path', { d: `M${fmt(left)},${fmt(top)}V${fmt(bottom)}H${fmt(right)}`, fill: 'none', stroke: '#444' }),
  );
  parts.push(text(left + width / 2, bottom + 40, panel.xName, { 'text-anchor': 'middle', fill: '#444' }));

  if (shown.length === 0) {
    parts.push(
      text(left + width / 2, top + height / 2, 'no data', { 'text-anchor': 'middle', fill: '#888' }),
    );
  }
  for (const s of shown) {
    const drawn = panel.thin ? thinned(s.points, panel.thin) : s.points;
    parts.push(
      el('path', {
        class: 'series',
        'data-series': s.id,
        d: pathData(drawn, x, y),
        fill: 'none',
        stroke: s.colour,
        'stroke-width': s.faint ? 1 : 2,
        'stroke-opacity': s.faint ? 0.3 : undefined,
        'stroke-dasharray': s.dashed ? '6 4' : undefined,
        'stroke-linejoin': 'round',
      }),
    );
    if (s.faint || panel.thin) continue; // per-step series: too many points for dots
    const dots = s.points.map((p) =>
      el(
        'circle',
        { cx: x(p.x), cy: y(p.value), r: 3.5, fill: s.colour, stroke: '#fff', 'stroke-width': 1 },
        el(
          'title',
          {},
          escapeXml(`${s.label}, ${panel.xName} ${fmt(p.x)}: ${panel.yLabel(p.value, yAxis.decimals + 2)}`),
        ),
      ),
    );
    parts.push(el('g', { class: 'points', 'data-series': s.id }, dots.join('')));
  }
  parts.push(legend(shown, left, bottom + LEGEND_BELOW, !panel.thin));
  return el('g', { class: 'panel', 'data-panel': panel.heading.toLowerCase() }, `\n${parts.join('\n')}\n`);
}

/** Where `v` falls on the axis, 0 at min and 1 at max; computed in tick units, which cannot overflow. */
function fraction(v: number, axis: Axis): number {
  const { step } = axis;
  const span = axis.max / step - axis.min / step;
  return span > 0 ? (v / step - axis.min / step) / span : 0.5;
}

/** At most `max` points, evenly spaced, always keeping the first, the last and every segment start. */
function thinned(points: Series['points'], max: number): Series['points'] {
  if (points.length <= max) return points;
  const stride = points.length / max;
  return points.filter(
    (p, i) =>
      p.newSegment || i === points.length - 1 || Math.floor(i / stride) !== Math.floor((i - 1) / stride),
  );
}

/** `M`/`L` commands through the points, with a new `M` after each gap. */
function pathData(points: Series['points'], x: (v: number) => number, y: (value: number) => number): string {
  return points.map((p) => `${p.newSegment ? 'M' : 'L'}${fmt(x(p.x))},${fmt(y(p.value))}`).join('');
}

/** A line per series, with a dot where the panel draws dots. */
function legend(series: Series[], left: number, y: number, dots: boolean): string {
  let x = left;
  const items = series.map((s) => {
    const item = el(
      'g',
      { class: 'legend-item' },
      [
        el('line', {
          x1: x,
          y1: y,
          x2: x + 24,
          y2: y,
          stroke: s.colour,
          'stroke-width': 2,
          'stroke-opacity': s.faint ? 0.3 : undefined,
          'stroke-dasharray': s.dashed ? '6 4' : undefined,
        }),
        s.faint || !dots ? '' : el('circle', { cx: x + 12, cy: y, r: 3.5, fill: s.colour }),
        text(x + 30, y + 4, s.label, { fill: '#222' }),
      ].join(''),
    );
    x += 30 + 8 * s.label.length + 24;
    return item;
  });
  return el('g', { class: 'legend' }, items.join(''));
}

/** Smallest and largest of many values, without spreading them into arguments (which overflows the stack). */
function extent(values: readonly number[]): { lo: number; hi: number } | null {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? { lo, hi } : null;
}

/**
 * Epoch ticks from the first epoch on, at most {@link MAX_X_TICKS}; a lone epoch gets half an epoch either
 * side.
 */
function epochAxis(epochs: number[]): Axis {
  const range = extent(epochs);
  if (!range) return { min: 0.5, max: 1.5, step: 1, ticks: [1], decimals: 0 };
  const { lo: first, hi: last } = range;
  if (first === last) return { min: first - 0.5, max: first + 0.5, step: 1, ticks: [first], decimals: 0 };
  const step = Math.max(1, niceStep(last / (MAX_X_TICKS - 1) - first / (MAX_X_TICKS - 1), true));
  const ticks: number[] = [];
  for (let e = first; e <= last + 1e-9 && ticks.length <= MAX_X_TICKS; e += step) ticks.push(e);
  return { min: first, max: last, step, ticks, decimals: 0 };
}

/** Step ticks at nice whole numbers covering every step. */
function stepAxis(steps: number[]): Axis {
  const range = extent(steps);
  if (!range) return makeAxis(0, 1, 1);
  const lo = Math.min(0, range.lo);
  const hi = Math.max(range.hi, lo + 1);
  const step = niceStep(hi / (MAX_X_TICKS - 1) - lo / (MAX_X_TICKS - 1), true);
  return makeAxis(Math.floor(lo / step) * step, Math.ceil(hi / step) * step, step);
}

/**
 * A y axis from nice ticks around the data, with room above and below it so that no point sits
 * on the frame, whatever the values (1e-30 or 1e300, all equal, a million of them). Accuracy stays
 * inside [0, 1], so values all above 0.95 give a 94–100% axis rather than a 0–100% one with the
 * interesting part squashed flat.
 */
function valueAxis(values: number[], isFraction: boolean): Axis {
  const range = extent(values);
  if (!range) return makeAxis(0, 1, 0.2);
  let { lo, hi } = range;
  // Half each before subtracting: the span of ±1e308 is not a float, its halves are.
  let halfSpan = hi / 2 - lo / 2;
  if (!(halfSpan > Math.max(Math.abs(hi), Math.abs(lo)) * 1e-12)) {
    const pad = isFraction ? 0.01 : Math.abs(hi) * 0.1 || 1;
    lo -= pad;
    hi += pad;
    halfSpan = hi / 2 - lo / 2;
  }
  // Everything in units of the step from here: near ±Number.MAX_VALUE a sum of two values is Infinity.
  const step = niceStep(halfSpan * (2 / TARGET_Y_TICKS), false);
  const padding = (halfSpan / step) * (2 * Y_PADDING);
  let min = Math.floor(lo / step - padding + 1e-9) * step;
  let max = Math.ceil(hi / step + padding - 1e-9) * step;
  // Losses and accuracies are never negative: neither is their axis (padding put 0.02 at -0.5).
  if (range.lo >= 0) min = Math.max(0, min);
  if (isFraction && range.lo >= 0 && range.hi <= 1) max = Math.min(1, max);
  if (!Number.isFinite(min)) min = lo;
  if (!Number.isFinite(max)) max = hi;
  if (max / step - min / step < 1) max = min + step;
  return makeAxis(min, max, step);
}

function makeAxis(min: number, max: number, step: number): Axis {
  const ticks: number[] = [];
  const count = Math.min(50, Math.round(max / step - min / step));
  for (let i = 0; i <= count; i++) {
    const tick = min + i * step;
    if (Number.isFinite(tick) && tick <= max) ticks.push(tick);
  }
  return { min, max, step, ticks, decimals: Math.min(20, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))) };
}

/** The 1, 2 or 5 × 10^k step closest above `raw` (integers only when `integer`). */
function niceStep(raw: number, integer: boolean): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  if (!(magnitude > 0) || !Number.isFinite(magnitude)) return integer ? Math.max(1, Math.round(raw)) : raw;
  const residual = raw / magnitude - 1e-9; // 0.05 / 5 is 0.010000000000000009: still a step of 0.01
  const step = (residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 5 ? 5 : 10) * magnitude;
  return integer ? Math.max(1, Math.round(step)) : step;
}
