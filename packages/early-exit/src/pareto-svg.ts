import type { ParetoPoint } from './calibration.js';

/** Options of {@link paretoSvg}. */
export interface ParetoSvgOptions {
  /** A title above the chart. */
  title?: string;
  /** Width in pixels (default 480). */
  width?: number;
  /** Height in pixels (default 320). */
  height?: number;
  /** A point to mark (e.g. the chosen operating point). */
  highlight?: ParetoPoint;
}

/** About five round tick values covering [min, max]. */
function ticks(min: number, max: number): number[] {
  const span = max - min || Math.abs(max) || 1;
  const raw = span / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * A dependency-free SVG line chart of accuracy (%) against mean MFLOPs per row: axes, ticks, the
 * points joined in FLOP order, and an optional highlighted point. Give it a sweep's `front`.
 */
export function paretoSvg(points: readonly ParetoPoint[], options: ParetoSvgOptions = {}): string {
  const width = options.width ?? 480;
  const height = options.height ?? 320;
  const margin = { left: 56, right: 16, top: options.title ? 32 : 16, bottom: 44 };
  const sorted = [...points].sort((a, b) => a.meanFlops - b.meanFlops);
  const xs = sorted.map((p) => p.meanFlops / 1e6);
  const ys = sorted.map((p) => p.accuracy * 100);
  // The data range, widened when it is a single value (or empty) so the scales stay finite.
  const range = (values: number[], empty: [number, number]): [number, number] => {
    if (values.length === 0) return empty;
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    return hi > lo ? [lo, hi] : [lo - 0.5, hi + 0.5];
  };
  const [x0, x1] = range(xs, [0, 1]);
  const [y0, y1] = range(ys, [0, 100]);
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const px = (v: number) => margin.left + ((v - x0) / (x1 - x0)) * plotW;
  const py = (v: number) => margin.top + plotH - ((v - y0) / (y1 - y0)) * plotH;
  const f = (v: number) => v.toFixed(1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<path d="M${margin.left},${margin.top}V${margin.top + plotH}H${margin.left + plotW}" fill="none" stroke="black"/>`,
  ];
  if (options.title) {
    parts.push(
      `<text x="${width / 2}" y="20" text-anchor="middle" font-size="13">${escapeXml(options.title)}</text>`,
    );
  }
  if (sorted.length > 0) {
    for (const t of ticks(x0, x1)) {
      parts.push(
        `<line x1="${f(px(t))}" y1="${margin.top + plotH}" x2="${f(px(t))}" y2="${margin.top + plotH + 4}" stroke="black"/>`,
        `<text x="${f(px(t))}" y="${margin.top + plotH + 16}" text-anchor="middle">${t}</text>`,
      );
    }
    for (const t of ticks(y0, y1)) {
      parts.push(
        `<line x1="${margin.left - 4}" y1="${f(py(t))}" x2="${margin.left}" y2="${f(py(t))}" stroke="black"/>`,
        `<text x="${margin.left - 7}" y="${f(py(t) + 4)}" text-anchor="end">${t}</text>`,
      );
    }
    const line = xs.map((x, i) => `${f(px(x))},${f(py(ys[i]!))}`).join(' ');
    parts.push(`<polyline points="${line}" fill="none" stroke="#1f77b4" stroke-width="2"/>`);
    for (const [i, x] of xs.entries())
      parts.push(`<circle cx="${f(px(x))}" cy="${f(py(ys[i]!))}" r="3" fill="#1f77b4"/>`);
  }
  if (options.highlight) {
    const { meanFlops, accuracy } = options.highlight;
    parts.push(
      `<circle cx="${f(px(meanFlops / 1e6))}" cy="${f(py(accuracy * 100))}" r="6" fill="none" stroke="#d62728" stroke-width="2"/>`,
    );
  }
  parts.push(
    `<text x="${margin.left + plotW / 2}" y="${height - 8}" text-anchor="middle">mean MFLOPs per input</text>`,
    `<text transform="translate(14 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">accuracy (%)</text>`,
    '</svg>',
  );
  return parts.join('\n');
}
