import {
  cosineDecay,
  createModel,
  createRuntime,
  fit,
  type Model,
  type Objective,
  type RunOptions,
  type Runtime,
  runPass,
  type TensorOrMap,
  type TrainingWindow,
  useBackend,
} from '@dynn/core';
import {
  activeChannels,
  calibrateBatchNorm,
  type ExportOptions,
  nestModel,
  residualCnnGraph,
  type SubNetwork,
  sortedNet,
  sortedObjective,
  sortedWindows,
  subNetworkOptions,
} from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { measureExits, runEach } from '../exit-runs.js';
import { loadFashionMnist } from '../fashion-mnist.js';
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';

/** Channels of the bench's residual CNN per stage (28x28, 14x14, 7x7). */
export const SORTED_NET_STAGE_WIDTHS = [8, 16, 32] as const;
/** Residual blocks per stage: depths 0 to 3. */
export const SORTED_NET_BLOCKS = 3;
/** Width fractions trained and measured. */
export const SORTED_NET_WIDTHS = [0.25, 0.5, 0.75, 1] as const;
/** Residual blocks kept per stage, trained and measured. */
export const SORTED_NET_DEPTHS = [0, 1, 2, 3] as const;
/**
 * Training images of the default run: one epoch of sorted training plus four networks trained
 * alone on them fits the bench in about 20 minutes on a 2-core machine.
 */
export const SORTED_NET_TRAIN_IMAGES = 18_000;
/** Channel counts round to a multiple of 2: every width above keeps a whole number of pairs of the 8-channel stage. */
export const SORTED_NET_MULTIPLE = 2;

/** A labelled image set held as tensors. */
export interface LabelledImages {
  x: tf.Tensor;
  y: tf.Tensor;
}

/** Options of `dynn bench sorted-net` (and of the demo, which runs the same pipeline smaller). */
export interface BenchSortedNetOptions {
  /** Passes over the training images (default 1). */
  epochs?: number;
  /** Training images, the first of the 60,000 (default {@link SORTED_NET_TRAIN_IMAGES}). */
  trainLimit?: number;
  /** Test images measured, the first of the 10,000 (default all). */
  testLimit?: number;
  /** Training images each sub-network's batch norms are recalibrated on (default 1,024). */
  calibrationImages?: number;
  /** Rows per training step (default 32). */
  batchSize?: number;
  /** Initial Adam learning rate, decayed to 0 by a cosine (default 1e-2). */
  learningRate?: number;
  /** Sub-networks trained per step, the largest and the smallest among them (default 4). */
  perStep?: number;
  /** Width fractions (default {@link SORTED_NET_WIDTHS}). */
  widths?: readonly number[];
  /** Depths (default {@link SORTED_NET_DEPTHS}). */
  depths?: readonly number[];
  /** Channels per stage of the full network (default {@link SORTED_NET_STAGE_WIDTHS}). */
  stageWidths?: readonly number[];
  /** Residual blocks per stage (default {@link SORTED_NET_BLOCKS}). */
  blocks?: number;
  /** Train each width alone too, as the baseline of sorted training (default true). */
  alone?: boolean;
  /** Test images timed at batch 256 (default 1,024). */
  timedImages?: number;
  /** Test images timed one at a time (default 32). */
  batch1Images?: number;
  /** Untimed passes before timing (default 1). */
  warmup?: number;
  /** Timed passes; the median is reported (default 5). */
  repeats?: number;
  /** Draw progress bars (default true). */
  progress?: boolean;
  /** Seed of weights, shuffling and sampled sub-networks (default 1). */
  seed?: number;
  /** Folder for the Pareto curve (JSON + SVG) and result.json (default `reports/sorted-net`). */
  out?: string;
}

/** One sub-network of the nested model, measured on the test set. */
export interface SubModelResult {
  width: number;
  depth: number;
  accuracy: number;
  /** FLOPs per test image the compute reports counted, in millions. */
  mflops_per_sample: number;
  /** Median milliseconds per batch of 256 test images. */
  ms_per_batch: number;
  /** Median milliseconds per image at batch 1. */
  ms_batch_1: number;
  /** Full network's ms per batch over this one's. */
  speedup: number;
  /** Full network's MFLOPs over this one's. */
  flops_reduction: number;
}

/** A width trained within the nested model and alone. */
export interface AloneResult {
  width: number;
  /** The nested model's sub-network at this width and full depth. */
  accuracy_sorted: number;
  /** The same architecture trained alone, with the same images, steps, schedule and seed. */
  accuracy_alone: number;
}

/** Whether the bench's claims held, with the numbers that decide it. */
export interface SortedNetGoals {
  /** Every sub-network keeps at least 96% of the full network's accuracy. */
  accuracy_vs_full: {
    met: boolean;
    threshold: number;
    worst_ratio: number;
    worst: string;
    failing: string[];
  };
  /** The smallest sub-network needs at most a tenth of the full network's FLOPs. */
  smallest_flops: { met: boolean; threshold: number; ratio: number; submodel: string };
  /** Each width's accuracy in the nested model is at most 1 pp below the same width trained alone. */
  alone_within_1pp: {
    met: boolean;
    threshold_pp: number;
    gaps_pp: { width: number; gap_pp: number }[];
    worst_gap_pp: number | null;
  };
  /**
   * Measured speedup at least 0.8 of the FLOP reduction up to a 4x reduction, and at least 0.5
   * of it beyond.
   */
  speedup_vs_flops: {
    met: boolean;
    worst_ratio_up_to_4x: number | null;
    worst_ratio_beyond_4x: number | null;
    failing: string[];
  };
  /**
   * Speedup rises as FLOPs fall: no sub-network with at least 10% fewer FLOPs than another is
   * slower than it. `spearman` is the rank correlation of FLOPs and speedup (-1: perfectly rising).
   */
  speedup_rises: { met: boolean; violations: number; examples: string[]; spearman: number };
}

/** The fields `dynn bench sorted-net --json` adds to the bench envelope. */
export interface BenchSortedNetResult {
  /** The full network (widest, deepest), exported as a plain static model. */
  full: { accuracy: number; mflops_per_sample: number };
  /** Every width x depth sub-network of the nested model, run with its run options. */
  submodels: SubModelResult[];
  /** Each width at full depth: sorted training against training it alone. */
  alone: AloneResult[];
  goals: SortedNetGoals;
}

/** The result with what the docs table also says: counts, seconds, the report folder. */
export interface BenchSortedNetRun {
  result: BenchSortedNetResult;
  /** Images trained on, calibrated on and measured on. */
  counts: { train: number; calibration: number; test: number; timed: number; batch1: number };
  epochs: number;
  /** Channels per stage and blocks per stage of the full network. */
  architecture: { stageWidths: number[]; blocks: number };
  /** Seconds of sorted training, and of training each width alone (all of them). */
  trainSeconds: { sorted: number; alone: number };
  /** The full network's medians: milliseconds per batch of 256 and per image at batch 1. */
  fullTiming: { ms_per_batch: number; ms_batch_1: number };
  reportDir: string;
}

/** `--quick`: a smoke-sized run (CI), not a measurement to quote. */
export const QUICK_BENCH_SORTED_NET: BenchSortedNetOptions = {
  trainLimit: 128,
  testLimit: 128,
  calibrationImages: 64,
  timedImages: 128,
  batch1Images: 2,
  warmup: 0,
  repeats: 1,
};

/** The name of a sub-network in reports: `w0.5 d2`. */
export function subModelName(width: number, depth: number): string {
  return `w${width} d${depth}`;
}

/**
 * The Fashion-MNIST images the sorted-net bench and demo use: the first `trainLimit` training
 * images, the first `calibrationImages` of them again for batch-norm recalibration, and the
 * first `testLimit` test images.
 */
export async function loadSortedNetData(options: {
  trainLimit: number;
  calibrationImages: number;
  testLimit?: number;
}): Promise<{ train: LabelledImages; calibration: tf.Tensor; test: LabelledImages }> {
  const data = await loadFashionMnist();
  const train = data.train.toTensors();
  const test = data.test.toTensors();
  const trainCount = Math.min(options.trainLimit, data.train.count);
  const testCount = Math.min(options.testLimit ?? data.test.count, data.test.count);
  const rows = (split: { images: tf.Tensor; labels: tf.Tensor }, count: number) => ({
    x: tf.slice(split.images, 0, count),
    y: tf.slice(split.labels, 0, count),
  });
  const out = {
    train: rows(train, trainCount),
    // Statistics the sub-networks will see at test time come from training images, never test ones.
    calibration: tf.slice(train.images, 0, Math.min(options.calibrationImages, trainCount)),
    test: rows(test, testCount),
  };
  tf.dispose([train.images, train.labels, test.images, test.labels]);
  return out;
}

/** How a network is trained: the same for sorted training and for each width alone. */
export interface TrainingPlan {
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  progress: boolean;
}

/**
 * Trains `model` on `train` with Adam and a cosine decay, drawing a progress bar labelled
 * `label`; with `windows`, each step trains the sub-networks they choose (sorted training) under
 * `loss`. Returns the seconds it took.
 */
export async function trainWithProgress(
  model: Model,
  train: LabelledImages,
  plan: TrainingPlan,
  label: string,
  sorted?: {
    windows: (batch: { x: TensorOrMap; y: TensorOrMap }, step: number) => readonly TrainingWindow[];
    loss: Objective;
  },
): Promise<number> {
  const rows = train.x.shape[0]!;
  const stepsPerEpoch = Math.ceil(rows / plan.batchSize);
  const bar = progressBar(label, plan.progress);
  const optimizer = tf.train.adam(plan.learningRate);
  let smoothed = Number.NaN;
  const started = performance.now();
  try {
    bar.start(plan.epochs * stepsPerEpoch, 0, { status: '' });
    await fit(model, train, {
      epochs: plan.epochs,
      batchSize: plan.batchSize,
      optimizer,
      learningRate: cosineDecay(plan.learningRate),
      seed: plan.seed,
      ...(sorted === undefined ? {} : { windows: sorted.windows, loss: sorted.loss }),
      callbacks: {
        onBatchEnd(step, logs) {
          smoothed = Number.isNaN(smoothed) ? logs.loss : 0.95 * smoothed + 0.05 * logs.loss;
          bar.update(logs.epoch * stepsPerEpoch + step + 1, {
            status: `epoch ${logs.epoch + 1} loss ${smoothed.toFixed(3)}`,
          });
        },
      },
    });
  } finally {
    bar.stop();
    optimizer.dispose();
  }
  return (performance.now() - started) / 1000;
}

/**
 * Accuracy on a labelled set and FLOPs per image from the compute reports, running `model` in
 * batches of 256 (`MEASURE_BATCH`) with `options` (a sub-network, or none).
 */
export async function measureAccuracy(
  model: Model,
  data: LabelledImages,
  options?: RunOptions,
): Promise<{ accuracy: number; mflops: number }> {
  // A nested network has no exits: every image is served by the final classifier.
  const { accuracy, flops } = await measureExits(model, data, options, []);
  return { accuracy, mflops: flops / data.x.shape[0]! / 1e6 };
}

/** The first `count` rows of `x` in batches of `size` (the caller disposes them). */
export function batchesOf(x: tf.Tensor, count: number, size: number): tf.Tensor[] {
  return Array.from({ length: Math.ceil(count / size) }, (_, i) =>
    tf.slice(x, i * size, Math.min(size, count - i * size)),
  );
}

/** Every width x depth pair, widest and deepest last. */
export function subNetworkGrid(
  widths: readonly number[],
  depths: readonly number[],
): { width: number; depth: number }[] {
  return widths.flatMap((width) => depths.map((depth) => ({ width, depth })));
}

/**
 * The nested residual CNN before training: `residualCnnGraph` nested with `nestModel` (every
 * stage's and every block's channels, every stage's blocks). Untrained weights carry no
 * importance order worth sorting by: sorted training makes every prefix the best of its size.
 */
export async function nestedResidualCnn(
  runtime: Runtime,
  stageWidths: readonly number[],
  blocks: number,
  seed: number,
): Promise<Model> {
  const plain = createModel(runtime, residualCnnGraph(runtime, { widths: stageWidths, blocks }), { seed });
  try {
    return await nestModel(plain, { multiple: SORTED_NET_MULTIPLE, sort: 'none' });
  } finally {
    plain.dispose();
  }
}

/**
 * Sorted training (sandwich rule: the largest and the smallest sub-network and random others
 * each step, the smaller ones also distilling from the largest's predictions in place) of a
 * nested model, then batch-norm statistics recalibrated for every sub-network of the grid on
 * `calibration`. Returns the calibrated model (the trained one is disposed) and the seconds
 * training took.
 */
export async function trainSortedNet(
  model: Model,
  train: LabelledImages,
  calibration: tf.Tensor,
  grid: readonly SubNetwork[],
  plan: TrainingPlan & { widths: readonly number[]; depths: readonly number[]; perStep: number },
  log: (line: string) => void,
): Promise<{ model: Model; seconds: number }> {
  const seconds = await trainWithProgress(model, train, plan, 'sorted training', {
    windows: sortedWindows({
      widths: [...plan.widths],
      depths: [...plan.depths],
      strategy: 'sandwich',
      perStep: plan.perStep,
      seed: plan.seed,
    }),
    loss: sortedObjective({ distill: true }),
  });
  log(`sorted training: ${seconds.toFixed(1)} s`);
  const started = performance.now();
  try {
    const calibrated = await calibrateBatchNorm(model, [...grid], { x: calibration }, { batchSize: 256 });
    log(
      `batch norm recalibrated for ${grid.length} sub-networks on ${calibration.shape[0]} images in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    return { model: calibrated, seconds };
  } finally {
    model.dispose();
  }
}

/**
 * `model` (a plain network) with batch-norm statistics recomputed exactly on `calibration`, as the
 * nested model's sub-networks get theirs: a baseline trained for a few hundred steps still has
 * moving averages far from its final activations (momentum 0.99), and comparing it uncalibrated
 * would flatter sorted training. Nesting first only makes its batch norms ones `calibrateBatchNorm`
 * recognises; the full network computes what `model` computes.
 */
export async function withCalibratedBatchNorm(model: Model, calibration: tf.Tensor): Promise<Model> {
  const nested = await nestModel(model, { multiple: SORTED_NET_MULTIPLE, sort: 'none' });
  try {
    return await calibrateBatchNorm(nested, [{}], { x: calibration }, { batchSize: 256 });
  } finally {
    nested.dispose();
  }
}

/** Indices of `points` on the Pareto front: no other point is at least as accurate with fewer FLOPs. */
export function paretoIndices(points: readonly { accuracy: number; mflops: number }[]): number[] {
  return points
    .map((p, i) => ({ p, i }))
    .filter(
      ({ p, i }) =>
        !points.some(
          (q, j) =>
            j !== i &&
            q.accuracy >= p.accuracy &&
            q.mflops <= p.mflops &&
            (q.accuracy > p.accuracy || q.mflops < p.mflops),
        ),
    )
    .sort((a, b) => a.p.mflops - b.p.mflops)
    .map(({ i }) => i);
}

function ranks(values: readonly number[]): number[] {
  const order = values.map((v, i) => ({ v, i })).sort((a, b) => a.v - b.v);
  const out = new Array<number>(values.length);
  for (let k = 0; k < order.length; ) {
    let end = k;
    while (end + 1 < order.length && order[end + 1]!.v === order[k]!.v) end++;
    for (let m = k; m <= end; m++) out[order[m]!.i] = (k + end) / 2;
    k = end + 1;
  }
  return out;
}

/** Spearman's rank correlation of two equally long lists (0 when either is constant). */
export function spearman(a: readonly number[], b: readonly number[]): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  const ma = mean(ra);
  const mb = mean(rb);
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i]! - ma) * (rb[i]! - mb);
    da += (ra[i]! - ma) ** 2;
    db += (rb[i]! - mb) ** 2;
  }
  return da === 0 || db === 0 ? 0 : num / Math.sqrt(da * db);
}

/** Checks the bench's claims against what it measured (never against fixed numbers). */
export function sortedNetGoals(
  full: { accuracy: number; mflops_per_sample: number },
  submodels: readonly SubModelResult[],
  alone: readonly AloneResult[],
): SortedNetGoals {
  const name = (s: SubModelResult) => subModelName(s.width, s.depth);
  const ratios = submodels.map((s) => ({ s, ratio: full.accuracy > 0 ? s.accuracy / full.accuracy : 0 }));
  const worst = ratios.reduce((a, b) => (b.ratio < a.ratio ? b : a), ratios[0]!);
  const smallest = submodels.reduce((a, b) => (b.mflops_per_sample < a.mflops_per_sample ? b : a));
  const smallestRatio = smallest.mflops_per_sample / full.mflops_per_sample;
  const gaps = alone.map((a) => ({ width: a.width, gap_pp: (a.accuracy_sorted - a.accuracy_alone) * 100 }));
  const worstGap = gaps.length === 0 ? null : Math.min(...gaps.map((g) => g.gap_pp));
  const efficiency = submodels.map((s) => ({ s, ratio: s.speedup / s.flops_reduction }));
  const upTo4 = efficiency.filter((e) => e.s.flops_reduction <= 4);
  const beyond4 = efficiency.filter((e) => e.s.flops_reduction > 4);
  const minOf = (list: typeof efficiency) =>
    list.length === 0 ? null : Math.min(...list.map((e) => e.ratio));
  const slowFailing = [...upTo4.filter((e) => e.ratio < 0.8), ...beyond4.filter((e) => e.ratio < 0.5)].map(
    (e) => `${name(e.s)} (${e.s.speedup.toFixed(2)}x for ${e.s.flops_reduction.toFixed(2)}x fewer FLOPs)`,
  );
  const violations: string[] = [];
  for (const a of submodels) {
    for (const b of submodels) {
      if (b.mflops_per_sample <= 0.9 * a.mflops_per_sample && b.speedup < a.speedup) {
        violations.push(
          `${name(b)} (${b.mflops_per_sample.toFixed(2)} MFLOPs, ${b.speedup.toFixed(2)}x) slower than ${name(a)} (${a.mflops_per_sample.toFixed(2)} MFLOPs, ${a.speedup.toFixed(2)}x)`,
        );
      }
    }
  }
  return {
    accuracy_vs_full: {
      met: ratios.every((r) => r.ratio >= 0.96),
      threshold: 0.96,
      worst_ratio: worst.ratio,
      worst: name(worst.s),
      failing: ratios
        .filter((r) => r.ratio < 0.96)
        .map((r) => `${name(r.s)} (${(r.ratio * 100).toFixed(1)}%)`),
    },
    smallest_flops: {
      met: smallestRatio <= 0.1,
      threshold: 0.1,
      ratio: smallestRatio,
      submodel: name(smallest),
    },
    alone_within_1pp: {
      met: gaps.length > 0 && gaps.every((g) => g.gap_pp >= -1),
      threshold_pp: 1,
      gaps_pp: gaps,
      worst_gap_pp: worstGap,
    },
    speedup_vs_flops: {
      met: slowFailing.length === 0,
      worst_ratio_up_to_4x: minOf(upTo4),
      worst_ratio_beyond_4x: minOf(beyond4),
      failing: slowFailing,
    },
    speedup_rises: {
      met: violations.length === 0,
      violations: violations.length,
      examples: violations.slice(0, 5),
      spearman: spearman(
        submodels.map((s) => s.mflops_per_sample),
        submodels.map((s) => s.speedup),
      ),
    },
  };
}

/** The accuracy-versus-MFLOPs chart: one line per depth across widths, the alone baselines, the front. */
export async function sortedNetParetoSvg(
  title: string,
  points: readonly { width: number; depth: number; accuracy: number; mflops: number }[],
  alone: readonly { width: number; accuracy: number; mflops: number }[] = [],
): Promise<string> {
  const depths = [...new Set(points.map((p) => p.depth))].sort((a, b) => a - b);
  const front = paretoIndices(points).map((i) => points[i]!);
  const line = (list: readonly { accuracy: number; mflops: number }[]) =>
    [...list].sort((a, b) => a.mflops - b.mflops).map((p) => ({ x: p.mflops, y: p.accuracy * 100 }));
  return lineChartSvg({
    title,
    xLabel: 'MFLOPs per image',
    yLabel: 'test accuracy (%)',
    series: [
      ...depths.map((d) => ({
        name: `nested, depth ${d} (widths ${points
          .filter((p) => p.depth === d)
          .map((p) => p.width)
          .join('/')})`,
        points: line(points.filter((p) => p.depth === d)),
      })),
      ...(alone.length === 0 ? [] : [{ name: 'each width trained alone (full depth)', points: line(alone) }]),
      { name: 'Pareto front of the nested model', points: line(front) },
    ],
  });
}

/**
 * Trains a nested residual CNN on Fashion-MNIST once with sorted training (sandwich rule and
 * in-place distillation over every width x depth), recalibrates batch norm per sub-network, and
 * measures every sub-network on the test set on wasm, side by side in one process with the full
 * network exported as a plain static model: accuracy, FLOPs from the compute reports, medians of
 * measured time at batch 256 and batch 1. Then trains each width alone, with the same images,
 * steps, schedule and seed, as the baseline of sorted training. Writes the Pareto curve (JSON +
 * SVG) into the report folder.
 */
export async function runBenchSortedNet(
  options: BenchSortedNetOptions = {},
  log: (line: string) => void = () => {},
): Promise<BenchSortedNetRun> {
  const widths = [...(options.widths ?? SORTED_NET_WIDTHS)];
  const depths = [...(options.depths ?? SORTED_NET_DEPTHS)];
  const stageWidths = [...(options.stageWidths ?? SORTED_NET_STAGE_WIDTHS)];
  const blocks = options.blocks ?? SORTED_NET_BLOCKS;
  const plan = {
    epochs: options.epochs ?? 1,
    // Small batches and a high rate: within one epoch the narrowest sub-networks need steps more
    // than they need exact gradients (batch 32 at 1e-2 beat 64 at 3e-3 by 10-20 pp on them).
    batchSize: options.batchSize ?? 32,
    learningRate: options.learningRate ?? 1e-2,
    seed: options.seed ?? 1,
    progress: options.progress ?? true,
  };
  const timing = { warmup: options.warmup ?? 1, repeats: options.repeats ?? 5 };
  await useBackend('wasm');
  const { train, calibration, test } = await loadSortedNetData({
    trainLimit: options.trainLimit ?? SORTED_NET_TRAIN_IMAGES,
    calibrationImages: options.calibrationImages ?? 1024,
    ...(options.testLimit === undefined ? {} : { testLimit: options.testLimit }),
  });
  const counts = {
    train: train.x.shape[0]!,
    calibration: calibration.shape[0]!,
    test: test.x.shape[0]!,
    timed: Math.min(options.timedImages ?? 1024, test.x.shape[0]!),
    batch1: Math.min(options.batch1Images ?? 32, test.x.shape[0]!),
  };
  log(
    `Fashion-MNIST: ${counts.train} training images (${counts.calibration} of them for batch-norm calibration), ${counts.test} test images`,
  );
  const runtime = createRuntime({ plugins: [sortedNet()] });
  const grid = subNetworkGrid(widths, depths);
  const fullSub = { width: Math.max(...widths), depth: Math.max(...depths) };
  let model: Model | undefined;
  let full: Model | undefined;
  const batches: tf.Tensor[] = [];
  try {
    const trained = await trainSortedNet(
      await nestedResidualCnn(runtime, stageWidths, blocks, plan.seed),
      train,
      calibration,
      grid,
      { ...plan, widths, depths, perStep: options.perStep ?? 4 },
      log,
    );
    model = trained.model;
    // The baseline: the full network as a plain static model (no nested layers), the batch-norm
    // statistics recalibrated for it as its own. Its batch norms stay layers, as the sub-networks'
    // do, so the speedups measure the smaller networks, not batch-norm folding.
    const exported = runPass<ExportOptions>(runtime, 'sorted-net.export', model, {
      ...fullSub,
      foldBatchNorm: false,
    });
    full = createModel(runtime, exported.graph, { weights: exported.weights });
    const fullMeasured = await measureAccuracy(full, test);
    const measured: { accuracy: number; mflops: number }[] = [];
    const bar = progressBar('measuring sub-networks', plan.progress);
    bar.start(grid.length, 0, { status: '' });
    try {
      for (const [i, sub] of grid.entries()) {
        measured.push(await measureAccuracy(model, test, subNetworkOptions(sub)));
        bar.update(i + 1, { status: subModelName(sub.width, sub.depth) });
      }
    } finally {
      bar.stop();
    }

    log(`timing ${grid.length} sub-networks and the full network side by side at batch 256`);
    batches.push(...batchesOf(test.x, counts.timed, 256));
    const large = batches.slice();
    const [fullMs, ...subMs] = await timeSideBySide(
      [
        runEach(full, undefined, large, false),
        ...grid.map((s) => runEach(model!, subNetworkOptions(s), large, false)),
      ],
      timing,
    );
    log('timing batch 1');
    const singles = batchesOf(test.x, counts.batch1, 1);
    batches.push(...singles);
    const [fullSingleMs, ...subSingleMs] = await timeSideBySide(
      [
        runEach(full, undefined, singles, false),
        ...grid.map((s) => runEach(model!, subNetworkOptions(s), singles, false)),
      ],
      timing,
    );
    const fullBatchMs = fullMs! / large.length;
    const submodels: SubModelResult[] = grid.map((sub, i) => {
      const msPerBatch = subMs[i]! / large.length;
      return {
        width: sub.width,
        depth: sub.depth,
        accuracy: measured[i]!.accuracy,
        mflops_per_sample: measured[i]!.mflops,
        ms_per_batch: msPerBatch,
        ms_batch_1: subSingleMs[i]! / singles.length,
        speedup: fullBatchMs / msPerBatch,
        flops_reduction: fullMeasured.mflops / measured[i]!.mflops,
      };
    });

    const alone: AloneResult[] = [];
    const aloneMflops: number[] = [];
    let aloneSeconds = 0;
    if (options.alone ?? true) {
      for (const width of widths) {
        const channels = stageWidths.map((c) => activeChannels(c, width, SORTED_NET_MULTIPLE));
        const single = createModel(runtime, residualCnnGraph(runtime, { widths: channels, blocks }), {
          seed: plan.seed,
        });
        let calibrated: Model | undefined;
        try {
          aloneSeconds += await trainWithProgress(single, train, plan, `alone, width ${width}`);
          calibrated = await withCalibratedBatchNorm(single, calibration);
          const own = await measureAccuracy(calibrated, test);
          const sorted = submodels.find((s) => s.width === width && s.depth === fullSub.depth)!;
          alone.push({ width, accuracy_sorted: sorted.accuracy, accuracy_alone: own.accuracy });
          aloneMflops.push(own.mflops);
          log(
            `width ${width} (channels ${channels.join('/')}): ${(own.accuracy * 100).toFixed(2)}% alone, ${(sorted.accuracy * 100).toFixed(2)}% in the nested model`,
          );
        } finally {
          single.dispose();
          calibrated?.dispose();
        }
      }
    }

    const fullResult = { accuracy: fullMeasured.accuracy, mflops_per_sample: fullMeasured.mflops };
    const result: BenchSortedNetResult = {
      full: fullResult,
      submodels,
      alone,
      goals: sortedNetGoals(fullResult, submodels, alone),
    };
    const points = submodels.map((s) => ({
      width: s.width,
      depth: s.depth,
      accuracy: s.accuracy,
      mflops: s.mflops_per_sample,
    }));
    const alonePoints = alone.map((a, i) => ({
      width: a.width,
      accuracy: a.accuracy_alone,
      mflops: aloneMflops[i]!,
    }));
    const pareto = {
      points: points.map((p) => ({ ...p, name: subModelName(p.width, p.depth) })),
      front: paretoIndices(points).map((i) => subModelName(points[i]!.width, points[i]!.depth)),
      alone: alonePoints,
    };
    const svg = await sortedNetParetoSvg(
      `Nested residual CNN (${stageWidths.join('/')} channels, ${blocks} blocks per stage), Fashion-MNIST test set`,
      points,
      alonePoints,
    );
    const reportDir = await writeReport(options.out ?? 'reports/sorted-net', {
      'pareto.json': `${JSON.stringify(pareto, null, 2)}\n`,
      'pareto.svg': svg,
    });
    return {
      result,
      counts,
      epochs: plan.epochs,
      architecture: { stageWidths, blocks },
      trainSeconds: { sorted: trained.seconds, alone: aloneSeconds },
      fullTiming: { ms_per_batch: fullBatchMs, ms_batch_1: fullSingleMs! / singles.length },
      reportDir,
    };
  } finally {
    model?.dispose();
    full?.dispose();
    tf.dispose([...batches, train.x, train.y, calibration, test.x, test.y]);
  }
}

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
const ms = (v: number) => v.toFixed(v < 10 ? 2 : 1);
const met = (ok: boolean) => (ok ? 'met' : 'not met');

/** The run as the markdown docs/benchmarks.md shows. */
export function benchSortedNetMarkdown(run: BenchSortedNetRun, head: BenchHead): string {
  const { result, counts, architecture } = run;
  const { goals } = result;
  const alone =
    result.alone.length === 0
      ? []
      : [
          '',
          `Each width at full depth, in the nested model and trained alone (same images, steps, schedule and seed, batch norm recalibrated on the same images; ${run.trainSeconds.alone.toFixed(0)} s for all):`,
          '',
          markdownTable(
            ['width', 'nested (sorted training)', 'trained alone', 'difference (pp)'],
            result.alone.map((a) => [
              a.width,
              pct(a.accuracy_sorted),
              pct(a.accuracy_alone),
              ((a.accuracy_sorted - a.accuracy_alone) * 100).toFixed(2),
            ]),
          ),
        ];
  const ratio = (v: number | null) => (v === null ? 'n/a' : v.toFixed(2));
  return [
    `${measuredOn(head)}; one sorted training run of ${run.epochs} epoch${run.epochs === 1 ? '' : 's'} on ` +
      `${counts.train.toLocaleString('en-US')} images (${run.trainSeconds.sorted.toFixed(0)} s), batch norm ` +
      `recalibrated per sub-network on ${counts.calibration.toLocaleString('en-US')} training images, measured on ` +
      `${counts.test.toLocaleString('en-US')} test images; times are medians after warm-up over ` +
      `${counts.timed.toLocaleString('en-US')} test images at batch 256 and ${counts.batch1} at batch 1. ` +
      `Residual CNN of ${architecture.stageWidths.join('/')} channels, ${architecture.blocks} blocks per stage.`,
    '',
    markdownTable(
      [
        'network',
        'accuracy',
        'MFLOPs / image',
        'ms / batch 256',
        'ms / image at batch 1',
        'speedup',
        'FLOP reduction',
      ],
      [
        [
          'full (plain static export)',
          pct(result.full.accuracy),
          result.full.mflops_per_sample.toFixed(3),
          ms(run.fullTiming.ms_per_batch),
          ms(run.fullTiming.ms_batch_1),
          '1.00',
          '1.00',
        ],
        ...result.submodels.map((s) => [
          `nested ${subModelName(s.width, s.depth)}`,
          pct(s.accuracy),
          s.mflops_per_sample.toFixed(3),
          ms(s.ms_per_batch),
          ms(s.ms_batch_1),
          s.speedup.toFixed(2),
          s.flops_reduction.toFixed(2),
        ]),
      ],
    ),
    ...alone,
    '',
    'Goals:',
    '',
    `- every sub-network >= 96% of the full network's accuracy: ${met(goals.accuracy_vs_full.met)} ` +
      `(worst ${goals.accuracy_vs_full.worst}, ${(goals.accuracy_vs_full.worst_ratio * 100).toFixed(1)}%` +
      `${goals.accuracy_vs_full.failing.length > 0 ? `; below: ${goals.accuracy_vs_full.failing.join(', ')}` : ''})`,
    `- smallest sub-network <= 1/10 of the full network's FLOPs: ${met(goals.smallest_flops.met)} ` +
      `(${goals.smallest_flops.submodel}: ${(goals.smallest_flops.ratio * 100).toFixed(1)}%)`,
    `- each width within 1 pp of training it alone: ${met(goals.alone_within_1pp.met)} ` +
      `(${goals.alone_within_1pp.gaps_pp.map((g) => `w${g.width}: ${g.gap_pp >= 0 ? '+' : ''}${g.gap_pp.toFixed(2)} pp`).join(', ') || 'not measured'})`,
    `- speedup >= 0.8x the FLOP reduction up to 4x, >= 0.5x beyond: ${met(goals.speedup_vs_flops.met)} ` +
      `(worst speedup / reduction ${ratio(goals.speedup_vs_flops.worst_ratio_up_to_4x)} up to 4x, ` +
      `${ratio(goals.speedup_vs_flops.worst_ratio_beyond_4x)} beyond)`,
    `- speedup rises as FLOPs fall (no sub-network with >= 10% fewer FLOPs is slower): ${met(goals.speedup_rises.met)} ` +
      `(${goals.speedup_rises.violations} violating pairs; rank correlation of FLOPs and speedup ${goals.speedup_rises.spearman.toFixed(2)})`,
  ].join('\n');
}
