import {
  activeBackend,
  type ComputeReport,
  createRuntime,
  DynnError,
  type Model,
  type Runtime,
} from '@dynn/core';
import { sortedNet, subNetworkOptions } from '@dynn/sorted-net';
import { classifyTwice, correctCount } from './classify.js';
import { type FashionSample, sampleImages } from './fashion-sample.js';
import { fetchJson } from './fetch-json.js';

/** The runtime the sorted-net example's model needs: the core ops and the nested ones. */
export function sortedNetRuntime(): Runtime {
  return createRuntime({ plugins: [sortedNet()] });
}

/** Where the site serves the sorted-net example's files, as absolute URLs. */
export interface SortedNetAssets {
  /** model.json of the nested CNN. */
  model: string;
  /** Its sub-networks measured on the test set. */
  subNetworks: string;
}

/**
 * The sorted-net example's files under a site root (`siteRoot`: the absolute URL of the site's
 * base, as `exampleAssets` takes it). They come from `apps/docs/public/models/fashion-sorted-net/`.
 */
export function sortedNetAssets(siteRoot: string): SortedNetAssets {
  const at = (path: string) => new URL(`models/fashion-sorted-net/${path}`, siteRoot).href;
  return { model: at('model.json'), subNetworks: at('sub-networks.json') };
}

/** One sub-network of the committed model, measured on the 10,000 test images when it was trained. */
export interface MeasuredSubNetwork {
  /** Fraction of every layer's channels it keeps. */
  width: number;
  /** Residual blocks it keeps in each stage. */
  depth: number;
  /** Accuracy on the test images. */
  accuracy: number;
  /** FLOPs per image, in millions, as the compute report counts them. */
  mflops: number;
}

/** The file the training script writes beside the nested model. */
export interface SubNetworkTable {
  description: string;
  /** Test images the accuracies were measured on. */
  testImages: number;
  /** Widths offered, ascending. */
  widths: number[];
  /** Depths offered, ascending. */
  depths: number[];
  /** One entry per width x depth. */
  subNetworks: MeasuredSubNetwork[];
}

const REGENERATE =
  'Regenerate it with `npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-sorted-net-model.ts`.';

function corrupt(file: string, problem: string): DynnError {
  return new DynnError('DATA_CORRUPT', `${file}: ${problem}. ${REGENERATE}`, { file });
}

function ascendingNumbers(value: unknown, ok: (v: number) => boolean): value is number[] {
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((v, i) => typeof v === 'number' && ok(v) && (i === 0 || v > (value[i - 1] as number)))
  );
}

/**
 * Checks a parsed `sub-networks.json` (`file` names it in errors) and returns it typed: one entry
 * per width x depth, accuracies in [0, 1], FLOPs positive. Throws `DATA_CORRUPT` naming the field.
 */
export function readSubNetworkTable(json: unknown, file: string): SubNetworkTable {
  const t = json as Partial<Record<keyof SubNetworkTable, unknown>> | null;
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw corrupt(file, 'is not a JSON object');
  if (!ascendingNumbers(t.widths, (v) => v > 0 && v <= 1)) {
    throw corrupt(file, "'widths' is not an ascending list of fractions in (0, 1]");
  }
  if (!ascendingNumbers(t.depths, (v) => Number.isInteger(v) && v >= 0)) {
    throw corrupt(file, "'depths' is not an ascending list of integers >= 0");
  }
  if (typeof t.testImages !== 'number' || !(t.testImages > 0)) {
    throw corrupt(file, "'testImages' is not a positive number");
  }
  const list = t.subNetworks;
  if (!Array.isArray(list)) throw corrupt(file, "'subNetworks' is not a list");
  list.forEach((entry, i) => {
    const e = entry as Partial<Record<keyof MeasuredSubNetwork, unknown>> | null;
    const fine =
      e !== null &&
      typeof e === 'object' &&
      typeof e.width === 'number' &&
      typeof e.depth === 'number' &&
      typeof e.accuracy === 'number' &&
      e.accuracy >= 0 &&
      e.accuracy <= 1 &&
      typeof e.mflops === 'number' &&
      e.mflops > 0;
    if (!fine) {
      throw corrupt(file, `subNetworks[${i}] is not { width, depth, accuracy in [0, 1], mflops > 0 }`);
    }
  });
  const entries = list as MeasuredSubNetwork[];
  for (const width of t.widths) {
    for (const depth of t.depths) {
      if (entries.filter((e) => e.width === width && e.depth === depth).length !== 1) {
        throw corrupt(file, `'subNetworks' must hold width ${width}, depth ${depth} once`);
      }
    }
  }
  if (entries.length !== t.widths.length * t.depths.length) {
    throw corrupt(file, `'subNetworks' holds ${entries.length} entries, not one per width and depth`);
  }
  return {
    description: typeof t.description === 'string' ? t.description : '',
    testImages: t.testImages,
    widths: t.widths,
    depths: t.depths,
    subNetworks: entries,
  };
}

/**
 * Fetches and checks the sub-network table at `url` (an absolute URL). Throws `DATA_MISSING` when
 * it cannot be fetched and `DATA_CORRUPT` when it is malformed.
 */
export async function fetchSubNetworkTable(
  url: string,
  fetchFunction: typeof fetch = (input, init) => globalThis.fetch(input, init),
): Promise<SubNetworkTable> {
  return readSubNetworkTable(await fetchJson(url, fetchFunction), url);
}

/** The entry of `table` for a width and depth (undefined when the table has none). */
export function measuredEntry(
  table: SubNetworkTable,
  width: number,
  depth: number,
): MeasuredSubNetwork | undefined {
  return table.subNetworks.find((e) => e.width === width && e.depth === depth);
}

/** The full network's entry: the largest width and depth. */
export function fullEntry(table: SubNetworkTable): MeasuredSubNetwork {
  return measuredEntry(table, table.widths.at(-1)!, table.depths.at(-1)!)!;
}

/** What the sorted-net example shows for one run. */
export interface SortedNetResult {
  /** The backend tfjs reports in use. */
  backend: string;
  width: number;
  depth: number;
  count: number;
  /** Predicted class per image. */
  predictions: Int32Array;
  correct: number;
  accuracy: number;
  /** FLOPs per image executed, from the compute report. */
  meanFlops: number;
  /** The compute report of the timed run: skipped blocks are absent, narrowed layers count less. */
  report: ComputeReport;
  /** Milliseconds of the first run (narrows the weights for this sub-network once; compiles GPU programs). */
  firstMs: number;
  /** Milliseconds of the second run. */
  ms: number;
}

/**
 * Classifies every image of `sample` in one batch with the sub-network `{ width, depth }` of the
 * nested `model` (a run option: the same weights, no rebuild), twice (see `classifyTwice`), and
 * reads the FLOPs executed from the compute report. Leaves no tensor behind.
 */
export async function runSortedNetExample(
  model: Model,
  sample: FashionSample,
  width: number,
  depth: number,
): Promise<SortedNetResult> {
  const images = sampleImages(sample);
  try {
    const run = await classifyTwice(model, images, subNetworkOptions({ width, depth }));
    const correct = correctCount(run.predictions, sample.labels);
    return {
      backend: activeBackend(),
      width,
      depth,
      count: sample.count,
      predictions: run.predictions,
      correct,
      accuracy: correct / sample.count,
      meanFlops: run.report.flops / sample.count,
      report: run.report,
      firstMs: run.firstMs,
      ms: run.ms,
    };
  } finally {
    images.dispose();
  }
}

/**
 * The key under which the page keeps a time it measured: the backend, the image count and the
 * sub-network (a time holds for all four).
 */
export function timeKey(backend: string, count: number, width: number, depth: number): string {
  return `${backend}|${count}|w${width}|d${depth}`;
}
