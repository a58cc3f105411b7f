import { createModel, createRuntime, isDynnError, type Model } from '@dynn/core';
import { describeEachBackend, guardLeaks, isGpuBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { staticModel } from './add-exits.js';
import {
  type ExitSweep,
  type ParetoPoint,
  pickOperatingPoint,
  runOptionsFor,
  sweepExits,
} from './calibration.js';
import { paretoSvg } from './pareto-svg.js';
import { earlyExit } from './plugin.js';
import { argMax, handModel, ROWS, sequenceExitsGraph } from './test-models.js';

/** 28 rows (ROWS four times); every third row's label is not the final layer's answer. */
const X = [0, 1, 2, 3].flatMap(() => ROWS);
const LABELS = X.map((row, i) => (i % 3 === 0 ? (argMax(row) + 1) % 3 : argMax(row)));

const sweeps: { criterion: 'maxProb' | 'entropy' | 'patience' | 'learned'; thresholds: number[] }[] = [
  { criterion: 'maxProb', thresholds: [0.5, 0.7, 0.9, 0.99] },
  { criterion: 'entropy', thresholds: [0.1, 0.4, 0.8] },
  { criterion: 'patience', thresholds: [1, 2] },
  { criterion: 'learned', thresholds: [0.1, 0.5, 0.9] },
];

/**
 * Runs the model at a point (the static network for the `full` point) and measures what the sweep
 * predicted.
 */
async function measure(model: Model, x: tf.Tensor, sweep: ExitSweep, point: ParetoPoint) {
  const run = point.threshold === null ? staticModel(model) : model;
  const { outputs, report } = await run.run(x, { outputs: ['logits'], options: runOptionsFor(sweep, point) });
  if (run !== model) run.dispose();
  const logits = (await outputs.logits!.array()) as number[][];
  outputs.logits!.dispose();
  const served = report!.servedBy.logits!;
  return {
    accuracy: logits.filter((row, i) => argMax(row) === LABELS[i]).length / LABELS.length,
    meanFlops: report!.flops / LABELS.length,
    exitHistogram: [...sweep.exits, 'b4'].map((node) => served.filter((s) => s === node).length),
  };
}

describeEachBackend('sweepExits', (backend) => {
  guardLeaks();

  for (const options of sweeps) {
    it(`predicts what a dynamic run does: ${options.criterion}`, async () => {
      const model = handModel({ halting: true });
      const x = tf.tensor2d(X);
      const y = tf.tensor1d(LABELS, 'int32');
      const sweep = await sweepExits(model, { x, y }, { ...options, batchSize: 12 });
      expect(sweep.exits).toEqual(['exit0', 'exit1', 'exit2']);
      expect(sweep.points.map((p) => p.threshold)).toEqual(options.thresholds);
      // Every point on cpu and wasm; the extremes on the (software, slow) GPU backends.
      const checked = isGpuBackend(backend)
        ? [sweep.points[0]!, sweep.points.at(-1)!]
        : [sweep.full, ...sweep.points];
      for (const point of checked) {
        const measured = await measure(model, x, sweep, point);
        expect(point.accuracy).toBeCloseTo(measured.accuracy, 12);
        expect(point.meanFlops).toBeCloseTo(measured.meanFlops, 6);
        expect(point.exitHistogram).toEqual(measured.exitHistogram);
      }
      // The front: ascending FLOPs, strictly ascending accuracy, nothing on it beaten.
      for (let i = 1; i < sweep.front.length; i++) {
        expect(sweep.front[i]!.meanFlops).toBeGreaterThanOrEqual(sweep.front[i - 1]!.meanFlops);
        expect(sweep.front[i]!.accuracy).toBeGreaterThan(sweep.front[i - 1]!.accuracy);
      }
      for (const p of sweep.front) {
        const beaten = [sweep.full, ...sweep.points].some(
          (q) =>
            q.meanFlops <= p.meanFlops &&
            q.accuracy >= p.accuracy &&
            (q.meanFlops < p.meanFlops || q.accuracy > p.accuracy),
        );
        expect(beaten).toBe(false);
      }
      tf.dispose([x, y]);
      model.dispose();
    });
  }

  for (const criterion of ['maxProb', 'entropy'] as const) {
    it(`searches one threshold per exit: ${criterion}`, async () => {
      const model = handModel();
      const x = tf.tensor2d(X);
      const y = tf.tensor1d(LABELS, 'int32');
      const grid = criterion === 'maxProb' ? [0.5, 0.7, 0.9, 0.99] : [0.1, 0.4, 0.8];
      const sweep = await sweepExits(model, { x, y }, { criterion, thresholds: grid, perExit: true });
      const strictest = criterion === 'maxProb' ? Math.max(...grid) : Math.min(...grid);
      const loosest = criterion === 'maxProb' ? Math.min(...grid) : Math.max(...grid);
      // One notch per step, from every exit at the strictest threshold to every exit at the loosest.
      expect(sweep.perExitPoints).toHaveLength(1 + 3 * (grid.length - 1));
      expect(sweep.perExitPoints[0]!.threshold).toEqual([strictest, strictest, strictest]);
      expect(sweep.perExitPoints.at(-1)!.threshold).toEqual([loosest, loosest, loosest]);
      for (let i = 1; i < sweep.perExitPoints.length; i++) {
        expect(sweep.perExitPoints[i]!.meanFlops).toBeLessThanOrEqual(sweep.perExitPoints[i - 1]!.meanFlops);
      }
      // The simulation predicts the dynamic run with per-exit thresholds.
      const checked = isGpuBackend(backend) ? sweep.perExitPoints.slice(1, 2) : sweep.perExitPoints;
      for (const point of checked) {
        const measured = await measure(model, x, sweep, point);
        expect(point.accuracy).toBeCloseTo(measured.accuracy, 12);
        expect(point.meanFlops).toBeCloseTo(measured.meanFlops, 6);
        expect(point.exitHistogram).toEqual(measured.exitHistogram);
      }
      const all = [sweep.full, ...sweep.points, ...sweep.perExitPoints];
      for (const p of sweep.front) {
        expect(all.some((q) => q.meanFlops <= p.meanFlops && q.accuracy > p.accuracy)).toBe(false);
      }
      tf.dispose([x, y]);
      model.dispose();
    });
  }

  it('picks operating points that honour the constraint', async () => {
    const model = handModel();
    const x = tf.tensor2d(X);
    const y = tf.tensor1d(LABELS, 'int32');
    const sweep = await sweepExits(model, { x, y }, sweeps[0]!);
    const all = [sweep.full, ...sweep.points];
    for (const drop of [0, 0.05, 0.1, 0.5]) {
      const point = pickOperatingPoint(sweep, { maxAccuracyDrop: drop });
      expect(point.accuracy).toBeGreaterThanOrEqual(sweep.full.accuracy - drop - 1e-12);
      // Nothing cheaper meets the constraint.
      expect(
        all.some((p) => p.meanFlops < point.meanFlops && p.accuracy >= sweep.full.accuracy - drop - 1e-12),
      ).toBe(false);
    }
    const cheapest = Math.min(...all.map((p) => p.meanFlops));
    for (const target of [cheapest, (cheapest + sweep.full.meanFlops) / 2, sweep.full.meanFlops]) {
      const point = pickOperatingPoint(sweep, { targetMeanFlops: target });
      expect(point.meanFlops).toBeLessThanOrEqual(target);
      expect(all.some((p) => p.meanFlops <= target && p.accuracy > point.accuracy)).toBe(false);
    }
    const error = (() => {
      try {
        pickOperatingPoint(sweep, { targetMeanFlops: cheapest - 1 });
      } catch (e) {
        return e;
      }
    })();
    expect(isDynnError(error, 'INVALID_OPTION')).toBe(true);
    expect((error as Error).message).toMatch(/no operating point costs at most/);
    expect(() => pickOperatingPoint(sweep, {} as never)).toThrow(
      /exactly one of maxAccuracyDrop and targetMeanFlops/,
    );
    tf.dispose([x, y]);
    model.dispose();
  });

  it('refuses exits that answer every position of a sequence', async () => {
    const model = createModel(createRuntime({ plugins: [earlyExit()] }), sequenceExitsGraph());
    const x = tf.tensor2d([[0, 1, 2, 3]], undefined, 'int32');
    const y = tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32');
    const error = await sweepExits(model, { x, y }, { criterion: 'maxProb', thresholds: [0.5] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDynnError(error, 'INVALID_OPTION')).toBe(true);
    expect((error as Error).message).toMatch(/exit 'exit0' answers every position.*lastPositionModel/);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('rejects bad sweep options', async () => {
    const model = handModel();
    const x = tf.tensor2d(X);
    const y = tf.tensor1d(LABELS, 'int32');
    const bad: [Parameters<typeof sweepExits>[2], RegExp][] = [
      [{ criterion: 'maxProb', thresholds: [] }, /non-empty list of finite numbers/],
      [{ criterion: 'patience', thresholds: [1.5] }, /patience values must be integers >= 1/],
      [
        { criterion: 'learned', thresholds: [0.5] },
        /criterion 'learned' needs exits inserted with halting: true/,
      ],
      [{ criterion: 'none' as never, thresholds: [0.5] }, /criterion is "none"/],
      [{ criterion: 'patience', thresholds: [1], perExit: true }, /perExit needs a thresholded criterion/],
    ];
    for (const [options, message] of bad) {
      const error = await sweepExits(model, { x, y }, options).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isDynnError(error, 'INVALID_OPTION')).toBe(true);
      expect((error as Error).message).toMatch(message);
    }
    tf.dispose([x, y]);
    model.dispose();
  });
});

it('draws the front as an SVG line chart', () => {
  const points: ParetoPoint[] = [
    { threshold: 0.5, accuracy: 0.8, meanFlops: 1.2e6, exitHistogram: [8, 2] },
    { threshold: 0.9, accuracy: 0.9, meanFlops: 2.5e6, exitHistogram: [5, 5] },
    { threshold: null, accuracy: 0.92, meanFlops: 4e6, exitHistogram: [0, 10] },
  ];
  const svg = paretoSvg(points, { title: 'digits <MLP> & exits', highlight: points[1] });
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trim().endsWith('</svg>')).toBe(true);
  expect(svg).toContain('digits &lt;MLP&gt; &amp; exits');
  const polyline = /<polyline points="([^"]+)"/.exec(svg)![1]!.split(' ');
  expect(polyline).toHaveLength(3);
  // Left to right in FLOPs, upwards in accuracy (SVG y grows downwards).
  const coordinates = polyline.map((p) => p.split(',').map(Number));
  expect(coordinates[0]![0]).toBeLessThan(coordinates[2]![0]!);
  expect(coordinates[0]![1]).toBeGreaterThan(coordinates[2]![1]!);
  expect(svg).toContain('mean MFLOPs per input');
  expect(svg).toContain('accuracy (%)');
  expect(svg).toMatch(/>2<\/text>/);
  expect(svg).toMatch(/>90<\/text>/);
  expect(svg.match(/stroke="#d62728"/g)).toHaveLength(1);
  expect(paretoSvg([])).toContain('</svg>');
});
