import {
  cosineDecay,
  createModel,
  createRuntime,
  fit,
  type Graph,
  type Model,
  type Runtime,
  runPass,
  useBackend,
} from '@dynn/core';
import {
  type ExitSweep,
  earlyExit,
  multiExitObjective,
  type ParetoPoint,
  paretoSvg,
  pickOperatingPoint,
  runOptionsFor,
  slowdownAttack,
  staticModel,
  sweepExits,
} from '@dynn/early-exit';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { fashionCnnGraph } from '../demo-models.js';
import {
  batchesOf,
  EARLY_EXIT_THRESHOLDS,
  EXIT_DISTILLATION,
  MEASURE_BATCH,
  measureExits,
  runEach,
  VALIDATION_MAX_DROP,
} from '../exit-runs.js';
import { loadFashionMnist } from '../fashion-mnist.js';
import { progressBar } from '../progress.js';
import { formatThreshold, markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';

/**
 * Channels of the early-exit bench's four 3x3 conv blocks: the demo CNN's three, then a wide one
 * at 3x3 resolution that holds much of the compute (as the deep end of a real network does).
 */
export const EARLY_EXIT_CNN_FILTERS = [8, 32, 64, 256] as const;

/** The pooling nodes an exit follows: after each of the first three conv blocks. */
export const EARLY_EXIT_POINTS = ['pool1', 'pool2', 'pool3'] as const;

/** Options of `dynn bench early-exit`. */
export interface BenchEarlyExitOptions {
  /** Training epochs (default 2). */
  epochs?: number;
  /** Folder for the Pareto curve (JSON + SVG) and the result (default `reports/early-exit`). */
  out?: string;
  /** Train on the first N training images only (smoke runs). */
  trainLimit?: number;
  /** Calibrate on N validation images and measure on the first N test images only (smoke runs). */
  testLimit?: number;
  /** Thresholds to sweep (default {@link EARLY_EXIT_THRESHOLDS}). */
  thresholds?: readonly number[];
  /** Accuracy the operating point may lose on the validation images, a fraction (default {@link VALIDATION_MAX_DROP}). */
  maxAccuracyDrop?: number;
  /** Untimed runs before timing (default 1). */
  warmup?: number;
  /** Timed runs per case; the median is reported (default 5). */
  repeats?: number;
  /** Show a progress bar while training (default true). */
  progress?: boolean;
  /** Seed of weights and shuffling (default 1). */
  seed?: number;
}

/** One way of running the network, measured on the test set. */
export interface MeasuredRun {
  accuracy: number;
  /** FLOPs the compute reports say were executed, per test image, in millions. */
  mflops_per_sample: number;
  /** Median milliseconds per batch of 256 test images. */
  ms_per_batch: number;
}

/** The fields `dynn bench early-exit --json` adds to the bench envelope. */
export interface BenchEarlyExitResult {
  /** The static network: every image to the final classifier, no exit head computed. */
  full: MeasuredRun;
  /** The multi-exit network at the calibrated operating point. */
  dynamic: MeasuredRun & {
    /** Test images served by each exit, in exit order, then by the final classifier. */
    exit_histogram: number[];
  };
  /** full ms / dynamic ms (batch 256). */
  speedup: number;
  /** full MFLOPs / dynamic MFLOPs. */
  flops_reduction: number;
  /** (full accuracy - dynamic accuracy) in percentage points. */
  accuracy_drop_pp: number;
  /** Median milliseconds per image at batch 1. */
  batch_1: { full_ms: number; dynamic_ms: number };
  /**
   * Slowdown robustness: PGD within an L-infinity ball of `epsilon` (pixels in [0, 1]) against
   * every exit's confidence, on the first `rows` test images, at the calibrated operating point.
   */
  slowdown: {
    epsilon: number;
    steps: number;
    rows: number;
    clean_mean_exit_depth: number;
    attacked_mean_exit_depth: number;
    clean_mflops_per_sample: number;
    attacked_mflops_per_sample: number;
  };
}

/** The result with what the docs table also shows: the operating point, the sweep and the run. */
export interface BenchEarlyExitRun {
  result: BenchEarlyExitResult;
  /** The calibration sweep on the validation images (plain JSON). */
  sweep: ExitSweep;
  /** The operating point picked from the sweep. */
  point: ParetoPoint;
  /** Images trained on, calibrated on, and measured on. */
  counts: { train: number; validation: number; test: number };
  epochs: number;
  trainSeconds: number;
  reportDir: string;
}

/** `--quick`: a smoke-sized run of a few seconds (CI), not a measurement to quote. */
export const QUICK_BENCH_EARLY_EXIT: BenchEarlyExitOptions = {
  epochs: 1,
  trainLimit: 512,
  testLimit: 300,
  thresholds: [0.1, 0.9, 0.99],
  // A barely trained network is never sure: accept any loss so an operating point is picked.
  maxAccuracyDrop: 1,
  warmup: 0,
  repeats: 1,
};

const VALIDATION_SIZE = 5000;
/** Images timed one at a time for the batch-1 figures. */
const BATCH_1_IMAGES = 64;

/**
 * The bench's Fashion-MNIST CNN: four 3x3 conv blocks, max pooling after the first three; the last
 * block runs at 3x3 and feeds the linear classifier directly.
 */
export function earlyExitCnnGraph(runtime: Runtime): Graph {
  return fashionCnnGraph(runtime, EARLY_EXIT_CNN_FILTERS, { poolLast: false });
}

function rowsOf(images: tf.Tensor, labels: tf.Tensor, start: number, count: number) {
  return {
    x: tf.slice(images, [start, 0, 0, 0], [count, -1, -1, -1]),
    y: tf.slice(labels, [start], [count]),
  };
}

/**
 * Trains a Fashion-MNIST CNN with three exits jointly (self-distillation from the final
 * classifier), calibrates per-exit max-softmax thresholds on the 5,000 held-out training images
 * (at most 0.3 pp accuracy lost there), then runs the static network and
 * the dynamic one side by side on the test set in one process on wasm: accuracy, executed FLOPs
 * (from the compute reports) and medians of measured time. Writes the Pareto curve (JSON + SVG)
 * into the report folder.
 */
export async function runBenchEarlyExit(
  options: BenchEarlyExitOptions = {},
  log: (line: string) => void = () => {},
): Promise<BenchEarlyExitRun> {
  const epochs = options.epochs ?? 2;
  const seed = options.seed ?? 1;
  const timing = { warmup: options.warmup ?? 1, repeats: options.repeats ?? 5 };
  await useBackend('wasm');
  const data = await loadFashionMnist();
  const trainTensors = data.train.toTensors();
  const testTensors = data.test.toTensors();
  const trainCount = Math.min(
    options.trainLimit ?? Number.POSITIVE_INFINITY,
    data.train.count - VALIDATION_SIZE,
  );
  const validationCount = Math.min(VALIDATION_SIZE, options.testLimit ?? VALIDATION_SIZE);
  const testCount = Math.min(options.testLimit ?? Number.POSITIVE_INFINITY, data.test.count);
  const train = rowsOf(trainTensors.images, trainTensors.labels, 0, trainCount);
  const validation = rowsOf(
    trainTensors.images,
    trainTensors.labels,
    data.train.count - VALIDATION_SIZE,
    validationCount,
  );
  const test = rowsOf(testTensors.images, testTensors.labels, 0, testCount);
  tf.dispose([trainTensors.images, trainTensors.labels, testTensors.images, testTensors.labels]);
  log(`Fashion-MNIST: ${trainCount} training, ${validationCount} validation, ${testCount} test images`);

  const runtime = createRuntime({ plugins: [earlyExit()] });
  const { graph } = runPass(runtime, 'early-exit.insert-exits', earlyExitCnnGraph(runtime), {
    at: EARLY_EXIT_POINTS,
    // Every position of the feature map, then a small hidden layer (BranchyNet-style): about
    // 0.2 MFLOPs per exit, and sure of most images already after the first conv block.
    head: 'mlp',
    pool: 'flatten',
    classes: 10,
  });
  const model = createModel(runtime, graph, { seed });
  let baseline: Model | undefined;
  try {
    const optimizer = tf.train.adam(4e-3);
    const batchSize = 64;
    const stepsPerEpoch = Math.ceil(trainCount / batchSize);
    const bar = progressBar('training', options.progress ?? true);
    let smoothed = Number.NaN;
    const started = performance.now();
    try {
      bar.start(epochs * stepsPerEpoch, 0, { status: '' });
      await fit(model, train, {
        epochs,
        batchSize,
        optimizer,
        learningRate: cosineDecay(4e-3),
        seed,
        loss: multiExitObjective({ graph, distillation: EXIT_DISTILLATION }),
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
    const trainSeconds = (performance.now() - started) / 1000;
    log(`trained ${epochs} epochs in ${trainSeconds.toFixed(1)} s`);

    const sweep = await sweepExits(model, validation, {
      criterion: 'maxProb',
      thresholds: options.thresholds ?? EARLY_EXIT_THRESHOLDS,
      batchSize: MEASURE_BATCH,
      perExit: true,
    });
    const point = pickOperatingPoint(sweep, {
      maxAccuracyDrop: options.maxAccuracyDrop ?? VALIDATION_MAX_DROP,
    });
    log(
      `operating point: max softmax >= ${formatThreshold(point.threshold)} (validation histogram ${point.exitHistogram.join('/')})`,
    );
    const dynamicOptions = runOptionsFor(sweep, point);
    // The baseline: the same trained weights without exits.
    baseline = staticModel(model);
    const full = await measureExits(baseline, test, undefined, sweep.exits);
    const dynamic = await measureExits(model, test, dynamicOptions, sweep.exits);

    const batches = batchesOf(test.x, testCount, MEASURE_BATCH);
    const singles = batchesOf(test.x, Math.min(BATCH_1_IMAGES, testCount), 1);
    log('timing batch 256 over the test set');
    const [fullPass, dynamicPass] = (await timeSideBySide(
      [runEach(baseline, undefined, batches), runEach(model, dynamicOptions, batches)],
      timing,
    )) as [number, number];
    log('timing batch 1');
    const [fullSingles, dynamicSingles] = (await timeSideBySide(
      [runEach(baseline, undefined, singles), runEach(model, dynamicOptions, singles)],
      timing,
    )) as [number, number];
    tf.dispose([...batches, ...singles]);

    log('measuring slowdown robustness (PGD against exit confidence)');
    const attackRows = Math.min(512, testCount);
    const attackInputs = tf.slice(test.x, 0, attackRows);
    const attack = await slowdownAttack(model, attackInputs, {
      epsilon: 8 / 255,
      steps: 5,
      options: dynamicOptions,
    });
    attackInputs.dispose();

    const fullMflops = full.flops / testCount / 1e6;
    const dynamicMflops = dynamic.flops / testCount / 1e6;
    const fullMs = fullPass / batches.length;
    const dynamicMs = dynamicPass / batches.length;
    const result: BenchEarlyExitResult = {
      full: { accuracy: full.accuracy, mflops_per_sample: fullMflops, ms_per_batch: fullMs },
      dynamic: {
        accuracy: dynamic.accuracy,
        mflops_per_sample: dynamicMflops,
        ms_per_batch: dynamicMs,
        exit_histogram: dynamic.histogram,
      },
      speedup: fullMs / dynamicMs,
      flops_reduction: fullMflops / dynamicMflops,
      accuracy_drop_pp: (full.accuracy - dynamic.accuracy) * 100,
      batch_1: {
        full_ms: fullSingles / singles.length,
        dynamic_ms: dynamicSingles / singles.length,
      },
      slowdown: {
        epsilon: attack.epsilon,
        steps: attack.steps,
        rows: attackRows,
        clean_mean_exit_depth: attack.clean.meanDepth,
        attacked_mean_exit_depth: attack.attacked.meanDepth,
        clean_mflops_per_sample: attack.clean.mflopsPerSample,
        attacked_mflops_per_sample: attack.attacked.mflopsPerSample,
      },
    };
    const svg = paretoSvg(sweep.front, {
      highlight: point,
      title: 'Fashion-MNIST CNN, 3 exits: validation sweep (max softmax)',
    });
    const reportDir = await writeReport(options.out ?? 'reports/early-exit', {
      'pareto.json': `${JSON.stringify(sweep, null, 2)}\n`,
      'pareto.svg': svg,
    });
    return {
      result,
      sweep,
      point,
      counts: { train: trainCount, validation: validationCount, test: testCount },
      epochs,
      trainSeconds,
      reportDir,
    };
  } finally {
    baseline?.dispose();
    model.dispose();
    tf.dispose([train.x, train.y, validation.x, validation.y, test.x, test.y]);
  }
}

/** The run as the markdown docs/benchmarks.md shows. */
export function benchEarlyExitMarkdown(run: BenchEarlyExitRun, head: BenchHead): string {
  const { result, point, counts } = run;
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  const ms = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  return [
    `${measuredOn(head)}; ${run.epochs} epochs on ` +
      `${counts.train.toLocaleString('en-US')} images (${run.trainSeconds.toFixed(0)} s), threshold ` +
      `calibrated on ${counts.validation.toLocaleString('en-US')} held-out images (max softmax >= ` +
      `${formatThreshold(point.threshold)}), measured on ${counts.test.toLocaleString('en-US')} test images; medians after warm-up.`,
    '',
    markdownTable(
      [
        'network',
        'accuracy',
        'MFLOPs / image',
        'ms / batch 256',
        'ms / image at batch 1',
        'served by exit 1 / 2 / 3 / final',
      ],
      [
        [
          'static (final classifier only)',
          pct(result.full.accuracy),
          result.full.mflops_per_sample.toFixed(3),
          ms(result.full.ms_per_batch),
          ms(result.batch_1.full_ms),
          `0 / 0 / 0 / ${counts.test}`,
        ],
        [
          'early exit (calibrated)',
          pct(result.dynamic.accuracy),
          result.dynamic.mflops_per_sample.toFixed(3),
          ms(result.dynamic.ms_per_batch),
          ms(result.batch_1.dynamic_ms),
          result.dynamic.exit_histogram.join(' / '),
        ],
      ],
    ),
    '',
    `Speedup ${result.speedup.toFixed(2)}x (batch 256) for a FLOP reduction of ` +
      `${result.flops_reduction.toFixed(2)}x (measured speedup = ` +
      `${((result.speedup / result.flops_reduction) * 100).toFixed(0)}% of it), accuracy drop ` +
      `${result.accuracy_drop_pp.toFixed(2)} pp.`,
    '',
    `Slowdown robustness: PGD (${result.slowdown.steps} steps, epsilon ${result.slowdown.epsilon.toFixed(4)}) ` +
      `against every exit's confidence raises the mean exit depth on ${result.slowdown.rows} test images from ` +
      `${result.slowdown.clean_mean_exit_depth.toFixed(2)} to ${result.slowdown.attacked_mean_exit_depth.toFixed(2)} ` +
      `(of 4) and the compute from ${result.slowdown.clean_mflops_per_sample.toFixed(3)} to ` +
      `${result.slowdown.attacked_mflops_per_sample.toFixed(3)} MFLOPs per image.`,
  ].join('\n');
}
