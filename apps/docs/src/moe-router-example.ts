import {
  activeBackend,
  type ComputeReport,
  createRuntime,
  DynnError,
  type Model,
  type Runtime,
} from '@dynn/core';
import { moeOptions, moeRouter } from '@dynn/moe-router';
import { classifyTwice, correctCount } from './classify.js';
import { type FashionSample, sampleImages } from './fashion-sample.js';
import { fetchJson } from './fetch-json.js';
import { MOE_EXPERTS } from './moe-router-settings.js';

/** The runtime the moe-router example's model needs: the core ops and the MoE op. */
export function moeRouterRuntime(): Runtime {
  return createRuntime({ plugins: [moeRouter()] });
}

/** Where the site serves the moe-router example's files, as absolute URLs. */
export interface MoeRouterAssets {
  /** model.json of the patch-token MoE classifier. */
  model: string;
  /** Its settings measured on the test set. */
  settings: string;
}

/**
 * The moe-router example's files under a site root (`siteRoot`: the absolute URL of the site's
 * base, as `exampleAssets` takes it). They come from `apps/docs/public/models/fashion-moe-router/`.
 */
export function moeRouterAssets(siteRoot: string): MoeRouterAssets {
  const at = (path: string) => new URL(`models/fashion-moe-router/${path}`, siteRoot).href;
  return { model: at('model.json'), settings: at('settings.json') };
}

/** One setting of the committed model, measured on the 10,000 test images when it was trained. */
export interface MeasuredSetting {
  /** Experts per token. */
  k: number;
  /** Inference capacity factor; 0: dropless. */
  capacityFactor: number;
  /** Accuracy on the test images. */
  accuracy: number;
  /** Share of the token-expert pairs the capacity dropped. */
  droppedShare: number;
  /** FLOPs per image the experts executed, in millions. */
  expertMflops: number;
  /** FLOPs per image of the whole run, in millions. */
  mflops: number;
}

/** The file the training script writes beside the model. */
export interface SettingsTable {
  description: string;
  /** Test images the settings were measured on. */
  testImages: number;
  /** Images per batch (the tokens of a batch share the capacity). */
  batchImages: number;
  /** Experts in the layer. */
  experts: number;
  /** Experts per token the model trained with. */
  trainedK: number;
  /** Experts per token offered, ascending. */
  ks: number[];
  /** Capacity factors offered, 0 (dropless) first. */
  capacityFactors: number[];
  /** One entry per k x capacity factor. */
  settings: MeasuredSetting[];
}

const REGENERATE =
  'Regenerate it with `npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-moe-router-model.ts`.';

function corrupt(file: string, problem: string): DynnError {
  return new DynnError('DATA_CORRUPT', `${file}: ${problem}. ${REGENERATE}`, { file });
}

function numberList(value: unknown, ok: (v: number) => boolean): value is number[] {
  return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'number' && ok(v));
}

const positiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
const share = (v: unknown): v is number => typeof v === 'number' && v >= 0 && v <= 1;

/**
 * Checks a parsed `settings.json` (`file` names it in errors) and returns it typed: one entry per
 * k x capacity factor, accuracies and shares in [0, 1], FLOPs positive. Throws `DATA_CORRUPT`
 * naming the field.
 */
export function readSettingsTable(json: unknown, file: string): SettingsTable {
  const t = json as Partial<Record<keyof SettingsTable, unknown>> | null;
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw corrupt(file, 'is not a JSON object');
  for (const field of ['testImages', 'batchImages', 'experts', 'trainedK'] as const) {
    if (!positiveInt(t[field])) throw corrupt(file, `'${field}' is not a positive integer`);
  }
  const experts = t.experts as number;
  if (!numberList(t.ks, (v) => Number.isInteger(v) && v >= 1 && v <= experts)) {
    throw corrupt(file, `'ks' is not a list of integers from 1 to ${experts}`);
  }
  if (!numberList(t.capacityFactors, (v) => Number.isFinite(v) && v >= 0)) {
    throw corrupt(file, "'capacityFactors' is not a list of numbers >= 0");
  }
  const list = t.settings;
  if (!Array.isArray(list)) throw corrupt(file, "'settings' is not a list");
  list.forEach((entry, i) => {
    const e = entry as Partial<Record<keyof MeasuredSetting, unknown>> | null;
    const fine =
      e !== null &&
      typeof e === 'object' &&
      typeof e.k === 'number' &&
      typeof e.capacityFactor === 'number' &&
      share(e.accuracy) &&
      share(e.droppedShare) &&
      typeof e.expertMflops === 'number' &&
      e.expertMflops >= 0 &&
      typeof e.mflops === 'number' &&
      e.mflops > 0;
    if (!fine) {
      throw corrupt(
        file,
        `settings[${i}] is not { k, capacityFactor, accuracy and droppedShare in [0, 1], expertMflops >= 0, mflops > 0 }`,
      );
    }
  });
  const entries = list as MeasuredSetting[];
  for (const k of t.ks) {
    for (const capacityFactor of t.capacityFactors) {
      if (entries.filter((e) => e.k === k && e.capacityFactor === capacityFactor).length !== 1) {
        throw corrupt(file, `'settings' must hold k ${k}, capacity factor ${capacityFactor} once`);
      }
    }
  }
  if (entries.length !== t.ks.length * t.capacityFactors.length) {
    throw corrupt(file, `'settings' holds ${entries.length} entries, not one per k and capacity factor`);
  }
  return {
    description: typeof t.description === 'string' ? t.description : '',
    testImages: t.testImages as number,
    batchImages: t.batchImages as number,
    experts,
    trainedK: t.trainedK as number,
    ks: t.ks,
    capacityFactors: t.capacityFactors,
    settings: entries,
  };
}

/**
 * Fetches and checks the settings table at `url` (an absolute URL). Throws `DATA_MISSING` when it
 * cannot be fetched and `DATA_CORRUPT` when it is malformed.
 */
export async function fetchSettingsTable(
  url: string,
  fetchFunction: typeof fetch = (input, init) => globalThis.fetch(input, init),
): Promise<SettingsTable> {
  return readSettingsTable(await fetchJson(url, fetchFunction), url);
}

/** The entry of `table` for `k` and a capacity factor (undefined when the table has none). */
export function measuredSetting(
  table: SettingsTable,
  k: number,
  capacityFactor: number,
): MeasuredSetting | undefined {
  return table.settings.find((e) => e.k === k && e.capacityFactor === capacityFactor);
}

/** What the moe-router example shows for one run. */
export interface MoeRouterResult {
  /** The backend tfjs reports in use. */
  backend: string;
  /** Experts per token. */
  k: number;
  /** Inference capacity factor; 0: dropless. */
  capacityFactor: number;
  /** Images classified. */
  count: number;
  /** Tokens (patches) per image. */
  tokensPerImage: number;
  /** Predicted class per image. */
  predictions: Int32Array;
  correct: number;
  accuracy: number;
  /** Per token (image after image, patches row by row), the experts that computed it, ascending. */
  assignment: number[][];
  /** Tokens each expert computed. */
  load: number[];
  /** Tokens that chose each expert, before the capacity. */
  demand: number[];
  /** Token-expert pairs the capacity dropped. */
  dropped: number;
  /** Tokens no expert computed: only the residual connection carried them. */
  unrouted: number;
  /** The tokens an expert may take in this batch, or null (dropless). */
  capacity: number | null;
  /** FLOPs per image of the whole run, from the compute report. */
  meanFlops: number;
  /** FLOPs per image the experts executed (their nodes in the compute report). */
  expertFlops: number;
  /** FLOPs per image had every expert computed every token (the same experts, dense). */
  denseExpertFlops: number;
  /** The compute report of the timed run. */
  report: ComputeReport;
  /** Milliseconds of the first run (on WebGL and WebGPU, compiles the GPU programs). */
  firstMs: number;
  /** Milliseconds of the second run. */
  ms: number;
}

/**
 * Classifies every image of `sample` in one batch with `k` experts per patch token and the
 * inference capacity factor `capacityFactor` (run options: the same weights, no rebuild), twice
 * (see `classifyTwice`), recording which experts computed each token. Reads the routing and the
 * FLOPs from the compute report. Leaves no tensor behind.
 */
export async function runMoeRouterExample(
  model: Model,
  sample: FashionSample,
  k: number,
  capacityFactor: number,
): Promise<MoeRouterResult> {
  const images = sampleImages(sample);
  try {
    const run = await classifyTwice(model, images, moeOptions({ k, capacityFactor, recordAssignment: true }));
    const stats = run.report.nodes.find((n) => n.op === 'moe-router.MoE')?.stats;
    if (stats === undefined) {
      throw new DynnError(
        'INVALID_INPUT',
        'The model has no moe-router.MoE node: it is not the example model.',
      );
    }
    const assignment = stats.assignment as number[][];
    const load = stats.load as number[];
    const expertNodes = run.report.nodes.filter((n) => /\/experts\/\d+\//.test(n.name));
    const expertTotal = expertNodes.reduce((sum, n) => sum + n.flops, 0);
    const pairs = load.reduce((a, b) => a + b, 0);
    const tokens = assignment.length;
    // Every expert has one shape: a token costs the same in each, so all of them on every token
    // cost `tokens * experts` times one pair.
    const perPair = pairs > 0 ? expertTotal / pairs : 0;
    const correct = correctCount(run.predictions, sample.labels);
    return {
      backend: activeBackend(),
      k,
      capacityFactor,
      count: sample.count,
      tokensPerImage: tokens / sample.count,
      predictions: run.predictions,
      correct,
      accuracy: correct / sample.count,
      assignment,
      load,
      demand: stats.demand as number[],
      dropped: stats.dropped as number,
      unrouted: stats.unrouted as number,
      capacity: stats.capacity as number | null,
      meanFlops: run.report.flops / sample.count,
      expertFlops: expertTotal / sample.count,
      denseExpertFlops: (perPair * tokens * MOE_EXPERTS) / sample.count,
      report: run.report,
      firstMs: run.firstMs,
      ms: run.ms,
    };
  } finally {
    images.dispose();
  }
}

/** The experts of each token of image `image`: `tokensPerImage` lists, patch after patch. */
export function imageExperts(
  assignment: readonly number[][],
  image: number,
  tokensPerImage: number,
): number[][] {
  return assignment.slice(image * tokensPerImage, (image + 1) * tokensPerImage);
}
