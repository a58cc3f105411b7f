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
