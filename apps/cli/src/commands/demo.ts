import {
  type BackendName,
  cosineDecay,
  createModel,
  createRuntime,
  evaluate,
  fit,
  useBackend,
} from '@dynn/core';
import { loadFashionMnist } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';
import { demoCnnGraph } from '../demo-models.js';
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { formatFlops, markdownTable, writeReport } from '../report-files.js';

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

/** What the demo measured. */
export interface DemoResult {
  backend: string;
  testAccuracy: number;
  params: number;
  flopsPerImage: number;
  imagesPerSecond: number;
  trainSeconds: number;
  reportDir: string;
}

const VALIDATION_SIZE = 5000;

function take(split: { images: tf.Tensor; labels: tf.Tensor }, start: number, count: number) {
  return {
    x: tf.slice(split.images, [start, 0, 0, 0], [count, -1, -1, -1]),
    y: tf.slice(split.labels, [start], [count]),
  };
}

/**
 * Trains the demo CNN on Fashion-MNIST (the last 5,000 training images held out for validation),
 * reports test accuracy, parameters, FLOPs per image and inference throughput, and writes a
 * markdown report with an SVG training curve.
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

  const runtime = createRuntime();
  const model = createModel(runtime, demoCnnGraph(runtime), { seed: options.seed });
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

  const { accuracy = 0 } = await evaluate(model, testSet, { batchSize: 256 });
  // Throughput: inference over the test set at batch 256, after one warm-up batch.
  const warm = await model.predict(tf.slice(testSet.x, 0, Math.min(256, testCount)));
  warm.dispose();
  const timed = performance.now();
  for (let start = 0; start < testCount; start += 256) {
    const batch = tf.slice(testSet.x, start, Math.min(256, testCount - start));
    const out = await model.predict(batch);
    await out.data();
    tf.dispose([batch, out]);
  }
  const imagesPerSecond = testCount / ((performance.now() - timed) / 1000);
  const flopsPerImage = model.costs(1).reduce((s, c) => s + c.flops, 0);
  const measured = {
    backend: tf.getBackend(),
    testAccuracy: accuracy,
    params: model.paramCount,
    flopsPerImage,
    imagesPerSecond,
    trainSeconds,
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
    'README.md': `# dynn demo: a CNN on Fashion-MNIST\n\n${table}\n\n![training curve](training-curve.svg)\n`,
    'training-curve.svg': svg,
    'result.json': `${JSON.stringify(measured, null, 2)}\n`,
  });
  const result: DemoResult = { ...measured, reportDir };
  model.dispose();
  tf.dispose([trainSet.x, trainSet.y, validation.x, validation.y, testSet.x, testSet.y]);
  return result;
}
