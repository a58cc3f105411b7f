import {
  type BackendName,
  cosineDecay,
  createModel,
  createRuntime,
  fit,
  type Model,
  runPass,
  useBackend,
} from '@dynn/core';
import {
  earlyExit,
  multiExitObjective,
  paretoSvg,
  pickOperatingPoint,
  runOptionsFor,
  staticModel,
  sweepExits,
} from '@dynn/early-exit';
import * as tf from '@tensorflow/tfjs-core';
import { DEMO_EXIT_HIDDEN, DEMO_EXIT_POINTS, demoCnnGraph } from '../demo-models.js';
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
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { formatFlops, formatThreshold, markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';

/** Options of `dynn demo`. */
export interface DemoOptions {
  backend: BackendName;
  epochs: number;
  batchSize: number;
  out: string;
  seed: number;
  /** Train on the first N training images only (smoke runs). */
  trainLimit?: number;
  /** Evaluate on the first N test images only (smoke runs). */
  testLimit?: number;
  progress: boolean;
}

/** `--quick`: a smoke-sized tour of a few seconds (one epoch on 512 images, 256 test images). */
export const QUICK_DEMO = { epochs: 1, trainLimit: 512, testLimit: 256 } as const;

/** The demo's early-exit comparison: the same trained CNN, static and with exits. */
export interface DemoEarlyExit {
  /** The calibrated threshold: one for every exit, or one per exit. */
  threshold: number | number[] | null;
  /** Test accuracy of the static network and of the early-exit one. */
  staticAccuracy: number;
  dynamicAccuracy: number;
  /** Executed MFLOPs per test image, from the compute reports. */
  staticMflopsPerImage: number;
  dynamicMflopsPerImage: number;
  /** Median milliseconds per batch of 256 test images, timed side by side. */
  staticMsPerBatch: number;
  dynamicMsPerBatch: number;
  /** Test images served by each exit, then by the final classifier. */
  exitHistogram: number[];
}

/** What the demo measured. */
export interface DemoResult {
  backend: string;
  testAccuracy: number;
  params: number;
  flopsPerImage: number;
  imagesPerSecond: number;
  trainSeconds: number;
  earlyExit: DemoEarlyExit;
  reportDir: string;
}

const VALIDATION_SIZE = 5000;
/** Test images the side-by-side timing runs over (10 batches of 256). */
const TIMED_IMAGES = 2560;

function take(split: { images: tf.Tensor; labels: tf.Tensor }, start: number, count: number) {
  return {
    x: tf.slice(split.images, [start, 0, 0, 0], [count, -1, -1, -1]),
    y: tf.slice(split.labels, [start], [count]),
  };
}

/**
 * Calibrates the exits on the validation images (at most 0.3 pp accuracy lost there), then runs
 * the static network and the early-exit one on the test images: accuracy, executed FLOPs, and
 * medians of measured time side by side (one warm-up, three timed passes each).
 */
async function compareEarlyExit(
  model: Model,
  staticNet: Model,
  validation: { x: tf.Tensor; y: tf.Tensor },
  test: { x: tf.Tensor; y: tf.Tensor },
) {
  const sweep = await sweepExits(model, validation, {
    criterion: 'maxProb',
    thresholds: EARLY_EXIT_THRESHOLDS,
    batchSize: MEASURE_BATCH,
    perExit: true,
  });
  const point = pickOperatingPoint(sweep, { maxAccuracyDrop: VALIDATION_MAX_DROP });
  const options = runOptionsFor(sweep, point);
  const full = await measureExits(staticNet, test, undefined, sweep.exits);
  const dynamic = await measureExits(model, test, options, sweep.exits);
  const testCount = test.x.shape[0]!;
  const timedImages = Math.min(TIMED_IMAGES, testCount);
  const batches = batchesOf(test.x, timedImages, MEASURE_BATCH);
  const [staticMs, dynamicMs] = (await timeSideBySide(
    [runEach(staticNet, undefined, batches), runEach(model, options, batches)],
    { warmup: 1, repeats: 3 },
  )) as [number, number];
  tf.dispose(batches);
  const comparison: DemoEarlyExit = {
    threshold: point.threshold,
    staticAccuracy: full.accuracy,
    dynamicAccuracy: dynamic.accuracy,
    staticMflopsPerImage: full.flops / testCount / 1e6,
    dynamicMflopsPerImage: dynamic.flops / testCount / 1e6,
    staticMsPerBatch: staticMs / batches.length,
    dynamicMsPerBatch: dynamicMs / batches.length,
    exitHistogram: dynamic.histogram,
  };
  const curve = paretoSvg(sweep.front, {
    highlight: point,
    title: 'Demo CNN with an early exit: validation accuracy vs compute',
  });
  // The static side's time is the static network's inference throughput at batch 256.
  return { comparison, curve, staticImagesPerSecond: (timedImages * 1000) / staticMs };
}

/** The report's early-exit section (markdown). */
function earlyExitSection(e: DemoEarlyExit): string {
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  const total = e.exitHistogram.reduce((a, b) => a + b, 0);
  const table = markdownTable(
    ['network', 'test accuracy', 'MFLOPs / image', 'ms / batch 256', 'served by exits / final'],
    [
      [
        'static',
        pct(e.staticAccuracy),
        e.staticMflopsPerImage.toFixed(3),
        e.staticMsPerBatch.toFixed(1),
        e.exitHistogram.map((_, i, all) => (i === all.length - 1 ? total : 0)).join(' / '),
      ],
      [
        'early exit',
        pct(e.dynamicAccuracy),
        e.dynamicMflopsPerImage.toFixed(3),
        e.dynamicMsPerBatch.toFixed(1),
        e.exitHistogram.join(' / '),
      ],
    ],
  );
  return [
    '## Early exit: the same CNN, static and dynamic',
    '',
    `The CNN trained with an early exit after \`${DEMO_EXIT_POINTS.join('`, `')}\` (an MLP with ` +
      `${DEMO_EXIT_HIDDEN} hidden units on the flattened feature map), jointly with the final ` +
      'classifier, which it also learns from. The static network is the same weights without exits; the dynamic one ' +
      `lets an image leave at the first exit whose max softmax reaches ${formatThreshold(e.threshold)}, ` +
      'calibrated on the validation images to lose at most 0.3 pp there. FLOPs come from the ' +
      'compute reports; times are medians of three side-by-side passes over 2,560 test images.',
    '',
    table,
    '',
    `Speedup ${(e.staticMsPerBatch / e.dynamicMsPerBatch).toFixed(2)}x for a FLOP reduction of ` +
      `${(e.staticMflopsPerImage / e.dynamicMflopsPerImage).toFixed(2)}x.`,
    '',
    '![accuracy vs FLOPs](early-exit-curve.svg)',
  ].join('\n');
}

/**
 * Trains the demo CNN with two early exits on Fashion-MNIST (the last 5,000 training images held
 * out for validation), reports the static network's test accuracy, parameters, FLOPs per image
 * and inference throughput, compares it with the early-exit network (accuracy, FLOPs, measured
 * time, the accuracy-vs-FLOPs curve), and writes a markdown report with SVG curves.
 */
export async function runDemo(options: DemoOptions, log: (line: string) => void): Promise<DemoResult> {
  await useBackend(options.backend);
  log(`backend: ${tf.getBackend()}`);
  const data = await loadFashionMnist();
  const train = data.train.toTensors();
  const test = data.test.toTensors();
  const trainCount = Math.min(
    options.trainLimit ?? Number.POSITIVE_INFINITY,
    data.train.count - VALIDATION_SIZE,
  );
  const testCount = Math.min(options.testLimit ?? Number.POSITIVE_INFINITY, data.test.count);
  const trainSet = take(train, 0, trainCount);
  const validation = take(
    train,
    data.train.count - VALIDATION_SIZE,
    Math.min(VALIDATION_SIZE, options.testLimit ?? VALIDATION_SIZE),
  );
  const testSet = take(test, 0, testCount);
  tf.dispose([train.images, train.labels, test.images, test.labels]);
  log(`Fashion-MNIST: ${trainCount} training, ${validation.y.shape[0]} validation, ${testCount} test images`);

  const runtime = createRuntime({ plugins: [earlyExit()] });
  const { graph } = runPass(runtime, 'early-exit.insert-exits', demoCnnGraph(runtime), {
    at: DEMO_EXIT_POINTS,
    head: 'mlp',
    hidden: DEMO_EXIT_HIDDEN,
    pool: 'flatten',
    classes: 10,
  });
  const model = createModel(runtime, graph, { seed: options.seed });
  const stepsPerEpoch = Math.ceil(trainCount / options.batchSize);
  const bar = progressBar('training', options.progress);
  const lossCurve: { x: number; y: number }[] = [];
  const valCurve: { x: number; y: number }[] = [];
  let smoothed = Number.NaN;
  const started = performance.now();
  const optimizer = tf.train.adam(4e-3);
  try {
    bar.start(options.epochs * stepsPerEpoch, 0, { status: '' });
    await fit(model, trainSet, {
      epochs: options.epochs,
      batchSize: options.batchSize,
      optimizer,
      learningRate: cosineDecay(4e-3),
      seed: options.seed,
      loss: multiExitObjective({ graph, distillation: EXIT_DISTILLATION }),
      validationData: validation,
      callbacks: {
        onBatchEnd(step, logs) {
          smoothed = Number.isNaN(smoothed) ? logs.loss : 0.95 * smoothed + 0.05 * logs.loss;
          const done = logs.epoch * stepsPerEpoch + step + 1;
          if (done % 20 === 0) lossCurve.push({ x: done / stepsPerEpoch, y: smoothed });
          bar.update(done, { status: `epoch ${logs.epoch + 1} loss ${smoothed.toFixed(3)}` });
        },
        onEpochEnd(epoch, logs) {
          valCurve.push({ x: epoch + 1, y: logs.valAccuracy ?? 0 });
          log(
            `epoch ${epoch + 1}: loss ${logs.loss.toFixed(4)}, val accuracy ${((logs.valAccuracy ?? 0) * 100).toFixed(2)}% (${logs.seconds.toFixed(1)} s)`,
          );
        },
      },
    });
  } finally {
    bar.stop();
    optimizer.dispose();
  }
  const trainSeconds = (performance.now() - started) / 1000;

  // The static network: the trained weights without exits (what a plain CNN would be).
  const staticNet = staticModel(model);
  const flopsPerImage = staticNet.costs(1).reduce((s, c) => s + c.flops, 0);
  log('early exit: calibrating on the validation images, then static vs dynamic on the test images');
  const { comparison, curve, staticImagesPerSecond } = await compareEarlyExit(
    model,
    staticNet,
    validation,
    testSet,
  );
  log(
    `early exit: ${(comparison.dynamicAccuracy * 100).toFixed(2)}% at ${comparison.dynamicMflopsPerImage.toFixed(2)} MFLOPs/image ` +
      `(static ${(comparison.staticAccuracy * 100).toFixed(2)}% at ${comparison.staticMflopsPerImage.toFixed(2)}), ` +
      `${(comparison.staticMsPerBatch / comparison.dynamicMsPerBatch).toFixed(2)}x faster`,
  );
  // The static network's accuracy and throughput are those its side of the comparison measured.
  const accuracy = comparison.staticAccuracy;
  const imagesPerSecond = staticImagesPerSecond;
  const measured = {
    backend: tf.getBackend(),
    testAccuracy: accuracy,
    params: staticNet.paramCount,
    flopsPerImage,
    imagesPerSecond,
    trainSeconds,
    earlyExit: comparison,
  };
  const svg = await lineChartSvg({
    title: 'Demo CNN on Fashion-MNIST',
    xLabel: 'epoch',
    yLabel: 'training loss (smoothed) / validation accuracy',
    series: [
      { name: 'training loss', points: lossCurve },
      { name: 'validation accuracy', points: valCurve },
    ],
    points: false,
  });
  const table = markdownTable(
    ['metric', 'value'],
    [
      ['backend', measured.backend],
      ['test accuracy', `${(accuracy * 100).toFixed(2)}% (${testCount} images)`],
      ['parameters', measured.params.toLocaleString('en-US')],
      ['FLOPs per image', formatFlops(flopsPerImage)],
      ['inference throughput (batch 256)', `${imagesPerSecond.toFixed(0)} images/s`],
      [
        'training time',
        `${trainSeconds.toFixed(1)} s (${options.epochs} epochs, batch ${options.batchSize})`,
      ],
    ],
  );
  const reportDir = await writeReport(options.out, {
    'README.md': `# dynn demo: a CNN on Fashion-MNIST\n\n${table}\n\n![training curve](training-curve.svg)\n\n${earlyExitSection(comparison)}\n`,
    'training-curve.svg': svg,
    'early-exit-curve.svg': curve,
    'result.json': `${JSON.stringify(measured, null, 2)}\n`,
  });
  const result: DemoResult = { ...measured, reportDir };
  staticNet.dispose();
  model.dispose();
  tf.dispose([trainSet.x, trainSet.y, validation.x, validation.y, testSet.x, testSet.y]);
  return result;
}
