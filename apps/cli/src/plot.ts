import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** One named line of a chart. */
export interface Series {
  name: string;
  points: ReadonlyArray<{ x: number; y: number }>;
}

/** What {@link lineChartSvg} draws. */
export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  /** Draw a point at every value (default true). */
  points?: boolean;
}

/** Renders a line chart to an SVG string with Vega-Lite (no browser or canvas needed). */
export async function lineChartSvg(chart: LineChart): Promise<string> {
  const values = chart.series.flatMap((s) => s.points.map((p) => ({ x: p.x, y: p.y, series: s.name })));
  const spec: TopLevelSpec = {
    title: chart.title,
    width: 520,
    height: 260,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: chart.points ?? true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: chart.xLabel, scale: { zero: false } },
      y: { field: 'y', type: 'quantitative', title: chart.yLabel, scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null },
    },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders a Vega-Lite spec to an SVG string (no browser or canvas needed). */
async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** What {@link barChartSvg} draws: one bar per category, in the order given. */
export interface BarChart {
  /** Title above the chart. */
  title: string;
  /** Title of the category axis. */
  xLabel: string;
  /** Title of the value axis. */
  yLabel: string;
  /** One bar per category, left to right. */
  bars: ReadonlyArray<{ label: string; value: number }>;
  /** Draws a dashed horizontal line at this value (an even share, a target). */
  reference?: number;
}

/** Renders a bar chart to an SVG string with Vega-Lite. */
export async function barChartSvg(chart: BarChart): Promise<string> {
  const order = chart.bars.map((b) => b.label);
  const layers: object[] = [
    {
      mark: { type: 'bar' },
      encoding: {
        x: { field: 'label', type: 'nominal', title: chart.xLabel, sort: order, axis: { labelAngle: 0 } },
        y: { field: 'value', type: 'quantitative', title: chart.yLabel },
      },
    },
  ];
  if (chart.reference !== undefined) {
    layers.push({
      data: { values: [{ reference: chart.reference }] },
      mark: { type: 'rule', strokeDash: [4, 4], color: 'black' },
      encoding: { y: { field: 'reference', type: 'quantitative' } },
    });
  }
  return renderSvg({
    title: chart.title,
    width: 520,
    height: 260,
    background: 'white',
    data: { values: chart.bars.map((b) => ({ label: b.label, value: b.value })) },
    layer: layers,
  } as TopLevelSpec);
}

/** What {@link heatmapSvg} draws: `values[row][column]` as coloured cells, with each value printed. */
export interface Heatmap {
  /** Title above the chart. */
  title: string;
  /** Title of the column axis. */
  xLabel: string;
  /** Title of the row axis. */
  yLabel: string;
  /** Row labels, top to bottom. */
  rows: readonly string[];
  /** Column labels, left to right. */
  columns: readonly string[];
  /** `values[row][column]`, one row per entry of `rows`. */
  values: ReadonlyArray<readonly number[]>;
  /** Digits printed in each cell (default 2). */
  digits?: number;
}

/** Renders a heatmap to an SVG string with Vega-Lite. */
export async function heatmapSvg(chart: Heatmap): Promise<string> {
  const values = chart.rows.flatMap((row, i) =>
    chart.columns.map((column, j) => ({ row, column, value: chart.values[i]![j]! })),
  );
  const digits = chart.digits ?? 2;
  const max = Math.max(...values.map((v) => v.value));
  const x = {
    field: 'column',
    type: 'nominal',
    title: chart.xLabel,
    sort: [...chart.columns],
    axis: { labelAngle: 0 },
  };
  const y = { field: 'row', type: 'nominal', title: chart.yLabel, sort: [...chart.rows] };
  return renderSvg({
    title: chart.title,
    width: 36 * chart.columns.length,
    height: 30 * chart.rows.length,
    background: 'white',
    data: { values },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: { x, y, color: { field: 'value', type: 'quantitative', title: null } },
      },
      {
        mark: { type: 'text', fontSize: 9 },
        encoding: {
          x,
          y,
          text: { field: 'value', type: 'quantitative', format: `.${digits}f` },
          color: { condition: { test: `datum.value > ${max / 2}`, value: 'white' }, value: 'black' },
        },
      },
    ],
  } as TopLevelSpec);
}
