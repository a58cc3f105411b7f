import {
  activeBackend,
  type ComputeReport,
  createRuntime,
  DynnError,
  type Model,
  type Runtime,
} from '@dynn/core';
import { type ExitSweep, earlyExit, type ParetoPoint, paretoSvg, runOptionsFor } from '@dynn/early-exit';
import { classifyTwice, correctCount } from './classify.js';
import { type FashionSample, sampleImages } from './fashion-sample.js';
import { fetchJson } from './fetch-json.js';
import { formatFlops, formatPercent } from './format.js';

/** The runtime the early-exit example's model needs: the core ops and the exit op. */
export function earlyExitRuntime(): Runtime {
  return createRuntime({ plugins: [earlyExit()] });
}

/** The calibration file the training script writes beside the multi-exit model. */
export interface EarlyExitCalibration {
  description: string;
  /** Held-out training images the sweep ran on. */
  validationImages: number;
  /** Accuracy the default operating point may lose against the network without exits (a fraction). */
  maxAccuracyDrop: number;
  /** The default operating point: the cheapest front point within `maxAccuracyDrop`. */
  operatingPoint: ParetoPoint;
  /** The max-softmax sweep: every threshold, the network without exits, and the Pareto front. */
  sweep: ExitSweep;
}

const REGENERATE =
  'Regenerate it with `npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-models.ts`.';

function corrupt(file: string, problem: string): DynnError {
  return new DynnError('DATA_CORRUPT', `${file}: ${problem}. ${REGENERATE}`, { file });
}

/** A threshold as a short stable key: `0.75`, `0.99/0.8/0.75` (one per exit), or `off` (no exits). */
export function thresholdKey(threshold: ParetoPoint['threshold']): string {
  if (threshold === null) return 'off';
  return Array.isArray(threshold) ? threshold.join('/') : String(threshold);
}

function isThreshold(value: unknown, exits: number): boolean {
  if (value === null) return true;
  if (Array.isArray(value)) return value.length === exits && value.every((t) => Number.isFinite(t));
  return typeof value === 'number' && Number.isFinite(value);
}

function checkPoint(value: unknown, path: string, exits: number, file: string): ParetoPoint {
  const p = value as Partial<Record<keyof ParetoPoint, unknown>> | null;
  const fine =
    p !== null &&
    typeof p === 'object' &&
    isThreshold(p.threshold, exits) &&
    typeof p.accuracy === 'number' &&
    p.accuracy >= 0 &&
    p.accuracy <= 1 &&
    typeof p.meanFlops === 'number' &&
    p.meanFlops >= 0 &&
    Array.isArray(p.exitHistogram) &&
    p.exitHistogram.length === exits + 1 &&
    p.exitHistogram.every((n) => Number.isInteger(n) && n >= 0);
  if (!fine) {
    throw corrupt(
      file,
      `${path} is not an operating point { threshold (a number, one per exit, or null), accuracy in [0, 1], ` +
        `meanFlops, exitHistogram of ${exits + 1} counts }`,
    );
  }
  return value as ParetoPoint;
}

/**
 * Checks a parsed calibration file (`file` names it in errors) and returns it typed. Throws
 * `DATA_CORRUPT` naming the field that is wrong.
 */
export function readCalibration(json: unknown, file: string): EarlyExitCalibration {
  const c = json as Partial<Record<keyof EarlyExitCalibration, unknown>> | null;
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw corrupt(file, 'is not a JSON object');
  const sweep = c.sweep as Partial<Record<keyof ExitSweep, unknown>> | undefined;
  if (sweep === null || typeof sweep !== 'object' || typeof sweep.criterion !== 'string') {
    throw corrupt(file, "has no 'sweep' with a 'criterion'");
  }
  const exits = sweep.exits;
  if (!Array.isArray(exits) || exits.length === 0 || !exits.every((e) => typeof e === 'string')) {
    throw corrupt(file, "'sweep.exits' is not a non-empty list of exit node names");
  }
  checkPoint(sweep.full, 'sweep.full', exits.length, file);
  for (const key of ['points', 'perExitPoints', 'front'] as const) {
    const list = sweep[key];
    if (!Array.isArray(list) || (key !== 'perExitPoints' && list.length === 0)) {
      throw corrupt(file, `'sweep.${key}' is not a ${key === 'perExitPoints' ? '' : 'non-empty '}list`);
    }
    for (const [i, p] of list.entries()) checkPoint(p, `sweep.${key}[${i}]`, exits.length, file);
  }
  const point = checkPoint(c.operatingPoint, 'operatingPoint', exits.length, file);
  const key = thresholdKey(point.threshold);
  if (!(sweep.front as ParetoPoint[]).some((p) => thresholdKey(p.threshold) === key)) {
    throw corrupt(file, `'operatingPoint' (threshold ${key}) is not on the sweep's front`);
  }
  if (typeof c.validationImages !== 'number' || typeof c.maxAccuracyDrop !== 'number') {
    throw corrupt(file, "'validationImages' and 'maxAccuracyDrop' must be numbers");
  }
  return {
    description: typeof c.description === 'string' ? c.description : '',
    validationImages: c.validationImages,
    maxAccuracyDrop: c.maxAccuracyDrop,
    operatingPoint: point,
    sweep: sweep as ExitSweep,
  };
}

/**
 * Fetches and checks the calibration file at `url` (an absolute URL). Throws `DATA_MISSING` when
 * it cannot be fetched and `DATA_CORRUPT` when it is malformed.
 */
export async function fetchCalibration(
  url: string,
  fetchFunction: typeof fetch = (input, init) => globalThis.fetch(input, init),
): Promise<EarlyExitCalibration> {
  return readCalibration(await fetchJson(url, fetchFunction), url);
}

/** An operating point the page offers: a point of the sweep's front. */
export interface OperatingChoice {
  /** A stable key for a select: the threshold, or `off` for the network with exits off. */
  key: string;
  /** What the select shows. */
  label: string;
  point: ParetoPoint;
}

const CRITERION_NAMES: Record<ExitSweep['criterion'], string> = {
  maxProb: 'max softmax ≥',
  entropy: 'normalised entropy ≤',
  patience: 'patience',
  learned: 'halting probability ≥',
};

/** The front's points as choices, cheapest first; the `null` threshold is "exits off". */
export function operatingChoices(calibration: EarlyExitCalibration): OperatingChoice[] {
  const criterion = CRITERION_NAMES[calibration.sweep.criterion];
  return [...calibration.sweep.front]
    .sort((a, b) => a.meanFlops - b.meanFlops)
    .map((point) => {
      const measured = `validation ${formatPercent(point.accuracy)} at ${formatFlops(point.meanFlops)}`;
      const key = thresholdKey(point.threshold);
      if (point.threshold === null) {
        return { key, label: `exits off: every image through the whole network (${measured})`, point };
      }
      const threshold = Array.isArray(point.threshold)
        ? `${point.threshold.join(' / ')} at exits ${point.threshold.map((_, k) => k + 1).join(' / ')}`
        : String(point.threshold);
      return { key, label: `${criterion} ${threshold} (${measured})`, point };
    });
}

/** The choice of the calibrated operating point. */
export function defaultChoice(
  calibration: EarlyExitCalibration,
  choices: readonly OperatingChoice[],
): OperatingChoice {
  const key = thresholdKey(calibration.operatingPoint.threshold);
  return choices.find((c) => c.key === key) ?? choices[0]!;
}

/** Names of where an image can leave, in order: `exit 1`, `exit 2`..., then `final`. */
export function exitLabels(calibration: EarlyExitCalibration): string[] {
  return [...calibration.sweep.exits.map((_, k) => `exit ${k + 1}`), 'final'];
}

/** The accuracy-vs-FLOPs curve of the sweep's front as an SVG string, `choice` circled. */
export function calibrationPlot(calibration: EarlyExitCalibration, choice: OperatingChoice): string {
  return paretoSvg(calibration.sweep.front, {
    highlight: choice.point,
    title: `Accuracy vs compute on ${calibration.validationImages.toLocaleString('en-US')} held-out images`,
  });
}

/** What the early-exit example shows. */
export interface EarlyExitResult {
  /** The backend tfjs reports in use. */
  backend: string;
  /** The threshold the images ran at: one for every exit, one per exit, or `null` (exits off). */
  threshold: ParetoPoint['threshold'];
  /** The key of the operating point it ran at (see {@link thresholdKey}). */
  choice: string;
  count: number;
  /** Predicted class per image. */
  predictions: Int32Array;
  /** Where each image left, an index into {@link exitLabels} (the last one: the final classifier). */
  servedBy: Int32Array;
  /** Images served by each exit, then by the final classifier. */
  histogram: number[];
  correct: number;
  accuracy: number;
  /** FLOPs executed per image, from the compute report. */
  meanFlops: number;
  /** FLOPs per image of the same network without exits (every image to the final classifier). */
  staticFlops: number;
  /** The compute report of the timed run: the rows each node computed on shrink after each exit. */
  report: ComputeReport;
  /** Milliseconds of the first run (includes GPU program compilation on WebGL and WebGPU). */
  firstMs: number;
  /** Milliseconds of the second run. */
  ms: number;
}

/**
 * Classifies every image of `sample` in one batch with the multi-exit `model` at `choice` (the
 * criterion and threshold are run options: no rebuild), twice (see `classifyTwice`), and reads
 * from the compute report which exit served each image and the FLOPs executed. Leaves no tensor
 * behind.
 */
export async function runEarlyExitExample(
  model: Model,
  sample: FashionSample,
  calibration: EarlyExitCalibration,
  choice: OperatingChoice,
): Promise<EarlyExitResult> {
  const { sweep } = calibration;
  const images = sampleImages(sample);
  try {
    const run = await classifyTwice(model, images, runOptionsFor(sweep, choice.point));
    const nodes = run.report.servedBy[run.output];
    if (nodes === undefined || nodes.length !== sample.count) {
      throw new DynnError(
        'INVALID_GRAPH',
        `The compute report names no serving node for each row of output '${run.output}'; ` +
          'the model is not the multi-exit network the calibration belongs to.',
      );
    }
    const servedBy = Int32Array.from(nodes, (node) => {
      const k = sweep.exits.indexOf(node);
      return k < 0 ? sweep.exits.length : k;
    });
    const histogram = new Array<number>(sweep.exits.length + 1).fill(0);
    for (const k of servedBy) histogram[k]! += 1;
    const correct = correctCount(run.predictions, sample.labels);
    return {
      backend: activeBackend(),
      threshold: choice.point.threshold,
      choice: choice.key,
      count: sample.count,
      predictions: run.predictions,
      servedBy,
      histogram,
      correct,
      accuracy: correct / sample.count,
      meanFlops: run.report.flops / sample.count,
      staticFlops: sweep.full.meanFlops,
      report: run.report,
      firstMs: run.firstMs,
      ms: run.ms,
    };
  } finally {
    images.dispose();
  }
}
