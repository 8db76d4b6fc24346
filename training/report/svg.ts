/**
 * The few SVG helpers both report charts share: text escaping, number formatting that can never
 * print `NaN`, an element builder and the `<svg>` document wrapper. No DOM, no dependencies.
 */

const FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif';

/** Escapes text or an attribute value for XML (`&`, `<`, `>`, both quotes). */
export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => XML_ENTITIES[c]);
}

const XML_ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

/**
 * A number for the SVG: at most `maxDecimals` decimals, no trailing zeros, no `-0`.
 * Non-finite input gives `'0'`; the charts filter such values out before they get here, this
 * only guarantees that nothing like `NaN` or `Infinity` can reach the output.
 */
export function fmt(value: number, maxDecimals = 2): string {
  if (!Number.isFinite(value)) return '0';
  const s = value.toFixed(maxDecimals);
  const trimmed = s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
  return trimmed === '-0' ? '0' : trimmed;
}

/** A fraction as a percentage with exactly `decimals` decimals, e.g. `0.98765 → "98.77%"`. */
export function formatPercent(fraction: number, decimals = 2): string {
  if (!Number.isFinite(fraction)) return '–';
  const s = (fraction * 100).toFixed(decimals);
  return `${/^-0(\.0*)?$/.test(s) ? s.slice(1) : s}%`;
}

export type Attrs = Record<string, string | number | undefined>;

/** ` name="value"` pairs; numbers go through {@link fmt}, `undefined` values are left out. */
function attrs(a: Attrs): string {
  let out = '';
  for (const [name, value] of Object.entries(a)) {
    if (value === undefined) continue;
    out += ` ${name}="${typeof value === 'number' ? fmt(value) : escapeXml(value)}"`;
  }
  return out;
}

/** An element; `children` is markup (already escaped) and a missing one makes it self-closing. */
export function el(tag: string, a: Attrs = {}, children?: string): string {
  return children === undefined ? `<${tag}${attrs(a)}/>` : `<${tag}${attrs(a)}>${children}</${tag}>`;
}

/** A `<text>` element holding `content` as escaped text. */
export function text(x: number, y: number, content: string, a: Attrs = {}): string {
  return el('text', { x, y, ...a }, escapeXml(content));
}

/**
 * A complete standalone SVG document: namespace, viewBox, a `<title>` for screen readers and
 * tooltips, a white background (so the picture reads in dark-mode viewers too) and the body.
 */
export function svgDocument(size: { width: number; height: number; title: string }, body: string): string {
  const { width, height, title } = size;
  const svg = el(
    'svg',
    {
      xmlns: 'http://www.w3.org/2000/svg',
      width,
      height,
      viewBox: `0 0 ${fmt(width)} ${fmt(height)}`,
      'font-family': FONT_FAMILY,
      'font-size': 12,
    },
    `\n${el('title', {}, escapeXml(title))}\n${el('rect', { width, height, fill: '#ffffff' })}\n${body}\n`,
  );
  return `${svg}\n`;
}
