/**
 * Trains the small models the docs site's live examples run, with fixed seeds, and writes them
 * with the sample images the pages classify into `apps/docs/public/` (served with the site, so
 * the pages fetch nothing from elsewhere):
 *
 * - `models/fashion-cnn/`: a three-block Fashion-MNIST CNN (the core example);
 * - `models/fashion-cnn-exits/`: a four-block Fashion-MNIST CNN with three early exits, plus
 *   `calibration.json`, the max-softmax sweep on 5,000 held-out training images and the
 *   operating point losing at most 0.5 pp of accuracy (the early-exit example);
 * - `data/fashion-mnist-sample.{json,bin}`: the first 256 Fashion-MNIST test images and labels.
 *
 * Each model folder also gets `training.json`: how it was trained and its accuracy on the 10,000
 * test images. The outputs are byte-for-byte the same on every run. A model file records the op-set
 * versions it was written with, so rerun this when an op the models use changes. From the
 * repository root:
 *
 *     npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-models.ts
 *
 * (the tsconfig's paths resolve `@dynn/*` to the package sources, as the site and the tests do;
 * without `--tsconfig`, Node takes the built packages: `npm run build` first). One epoch per model
 * on wasm: about four minutes in all on two cores.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cosineDecay,
  createModel,
  createRuntime,
  evaluate,
  type FitOptions,
  fit,
  type Graph,
  GraphBuilder,
  type Model,
  type Runtime,
  runPass,
  saveModel,
  useBackend,
} from '@dynn/core';
import { FASHION_MNIST_CLASS_NAMES, type ImageSplit, loadFashionMnist } from '@dynn/data-fashion-mnist';
import {
  earlyExit,
  multiExitObjective,
  pickOperatingPoint,
  runOptionsFor,
  staticModel,
  sweepExits,
} from '@dynn/early-exit';
import * as tf from '@tensorflow/tfjs-core';

/** Seed of every model's weights and of the training shuffles. */
const SEED = 1;
const EPOCHS = 1;
const BATCH_SIZE = 64;
const LEARNING_RATE = 4e-3;
/** The last training images, held out to calibrate the exits. */
const VALIDATION_SIZE = 5000;
/** Test images the pages classify. */
const SAMPLE_SIZE = 256;
/** Accuracy the default operating point may lose on the validation images (0.5 pp). */
const MAX_ACCURACY_DROP = 0.005;
/** Max-softmax thresholds the calibration sweeps. */
const THRESHOLDS = [
  0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
];

const publicDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'public');

/** Conv blocks (3x3, ReLU, same padding) each followed by 2x2 max pooling but the last `unpooled`. */
function cnnGraph(runtime: Runtime, filters: readonly number[], unpooled: number): Graph {
  const b = new GraphBuilder(runtime);
  let h = b.input('image', 'float32', ['batch', 28, 28, 1]);
  for (const [i, f] of filters.entries()) {
    h = b.add(
      'core.Conv2D',
      h,
      { filters: f, kernelSize: [3, 3], padding: 'same', activation: 'relu' },
      { name: `conv${i + 1}` },
    );
    if (i < filters.length - unpooled) {
      h = b.add('core.MaxPool2D', h, { poolSize: [2, 2] }, { name: `pool${i + 1}` });
    }
  }
  h = b.add('core.Flatten', h, {}, { name: 'flatten' });
  const logits = b.add('core.Dense', h, { units: 10 }, { name: 'classifier' });
  return b.build({ logits });
}

function rows(split: { images: tf.Tensor; labels: tf.Tensor }, start: number, count: number) {
  return {
    x: tf.slice(split.images, [start, 0, 0, 0], [count, -1, -1, -1]),
    y: tf.slice(split.labels, [start], [count]),
  };
}

async function trainModel(model: Model, data: { x: tf.Tensor; y: tf.Tensor }, loss?: FitOptions['loss']) {
  const optimizer = tf.train.adam(LEARNING_RATE);
  const started = performance.now();
  try {
    const history = await fit(model, data, {
      epochs: EPOCHS,
      batchSize: BATCH_SIZE,
      optimizer,
      learningRate: cosineDecay(LEARNING_RATE),
      seed: SEED,
      ...(loss === undefined ? {} : { loss }),
    });
    const last = history.epochs.at(-1)!;
    console.log(
      `  trained ${EPOCHS} epoch in ${((performance.now() - started) / 1000).toFixed(0)} s, loss ${last.loss.toFixed(3)}`,
    );
  } finally {
    optimizer.dispose();
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** What every `training.json` records about how its model was made. */
function provenance(trainCount: number) {
  return {
    script: 'apps/docs/scripts/train-models.ts',
    dataset: 'Fashion-MNIST (Zalando Research, MIT)',
    backend: tf.getBackend(),
    seed: SEED,
    epochs: EPOCHS,
    batchSize: BATCH_SIZE,
    optimizer: `Adam, learning rate ${LEARNING_RATE} with cosine decay`,
    trainImages: trainCount,
  };
}

/** The first {@link SAMPLE_SIZE} test images: raw 8-bit pixels in a .bin, labels and layout in a .json. */
async function writeSample(test: ImageSplit): Promise<void> {
  const pixels = test.height * test.width;
  const file = 'fashion-mnist-sample.bin';
  await mkdir(join(publicDir, 'data'), { recursive: true });
  await writeFile(join(publicDir, 'data', file), test.images.subarray(0, SAMPLE_SIZE * pixels));
  await writeJson(join(publicDir, 'data', 'fashion-mnist-sample.json'), {
    description: `The first ${SAMPLE_SIZE} Fashion-MNIST test images (Zalando Research, MIT)`,
    pixels: file,
    count: SAMPLE_SIZE,
    height: test.height,
    width: test.width,
    classNames: FASHION_MNIST_CLASS_NAMES,
    labels: Array.from(test.labels.subarray(0, SAMPLE_SIZE)),
  });
}

async function trainCoreModel(
  train: { x: tf.Tensor; y: tf.Tensor },
  test: { x: tf.Tensor; y: tf.Tensor },
): Promise<void> {
  console.log('fashion-cnn: conv 8-32-64, one dense classifier');
  const runtime = createRuntime();
  const model = createModel(runtime, cnnGraph(runtime, [8, 32, 64], 0), { seed: SEED });
  try {
    await trainModel(model, train);
    const { accuracy = 0 } = await evaluate(model, test, { batchSize: 256 });
    console.log(`  test accuracy ${(accuracy * 100).toFixed(2)}%`);
    const dir = join(publicDir, 'models', 'fashion-cnn');
    await saveModel(model, dir);
    await writeJson(join(dir, 'training.json'), {
      ...provenance(train.x.shape[0]!),
      params: model.paramCount,
      testImages: test.x.shape[0],
      testAccuracy: accuracy,
    });
  } finally {
    model.dispose();
  }
}

async function trainEarlyExitModel(
  train: { x: tf.Tensor; y: tf.Tensor },
  validation: { x: tf.Tensor; y: tf.Tensor },
  test: { x: tf.Tensor; y: tf.Tensor },
): Promise<void> {
  console.log('fashion-cnn-exits: conv 8-32-64-128, exits after pool1, pool2, pool3 (mlp heads)');
  const runtime = createRuntime({ plugins: [earlyExit()] });
  // The last block runs at 3x3 without pooling and holds much of the compute, as the deep end of
  // a real network does: what the exits save.
  const { graph } = runPass(runtime, 'early-exit.insert-exits', cnnGraph(runtime, [8, 32, 64, 128], 1), {
    at: ['pool1', 'pool2', 'pool3'],
    head: 'mlp',
    classes: 10,
  });
  const model = createModel(runtime, graph, { seed: SEED });
  let baseline: Model | undefined;
  try {
    await trainModel(model, train, multiExitObjective({ graph }));
    const sweep = await sweepExits(model, validation, {
      criterion: 'maxProb',
      thresholds: THRESHOLDS,
      batchSize: 256,
    });
    const point = pickOperatingPoint(sweep, { maxAccuracyDrop: MAX_ACCURACY_DROP });
    console.log(
      `  operating point: max softmax >= ${point.threshold}, validation accuracy ` +
        `${(point.accuracy * 100).toFixed(2)}% at ${(point.meanFlops / 1e6).toFixed(3)} MFLOPs ` +
        `(full network ${(sweep.full.accuracy * 100).toFixed(2)}% at ${(sweep.full.meanFlops / 1e6).toFixed(3)})`,
    );
    baseline = staticModel(model);
    const full = await evaluate(baseline, test, { batchSize: 256 });
    const dynamic = await evaluate(model, test, { batchSize: 256, options: runOptionsFor(sweep, point) });
    console.log(
      `  test accuracy ${((full.accuracy ?? 0) * 100).toFixed(2)}% without exits, ` +
        `${((dynamic.accuracy ?? 0) * 100).toFixed(2)}% at the operating point`,
    );
    const dir = join(publicDir, 'models', 'fashion-cnn-exits');
    await saveModel(model, dir);
    await writeJson(join(dir, 'calibration.json'), {
      description:
        `Max-softmax sweep of the exits on the last ${validation.x.shape[0]} training images (held out); ` +
        `the operating point is the cheapest losing at most ${MAX_ACCURACY_DROP * 100} pp of accuracy.`,
      validationImages: validation.x.shape[0],
      maxAccuracyDrop: MAX_ACCURACY_DROP,
      operatingPoint: point,
      sweep,
    });
    await writeJson(join(dir, 'training.json'), {
      ...provenance(train.x.shape[0]!),
      objective: 'multiExitObjective (cross-entropy of every exit and the final classifier, equal weights)',
      params: model.paramCount,
      testImages: test.x.shape[0],
      testAccuracyWithoutExits: full.accuracy,
      testAccuracyAtOperatingPoint: dynamic.accuracy,
    });
  } finally {
    baseline?.dispose();
    model.dispose();
  }
}

async function main(): Promise<void> {
  await useBackend('wasm');
  const data = await loadFashionMnist();
  const trainTensors = data.train.toTensors();
  const testTensors = data.test.toTensors();
  const trainCount = data.train.count - VALIDATION_SIZE;
  const train = rows(trainTensors, 0, trainCount);
  const validation = rows(trainTensors, trainCount, VALIDATION_SIZE);
  const test = rows(testTensors, 0, data.test.count);
  tf.dispose([trainTensors.images, trainTensors.labels, testTensors.images, testTensors.labels]);
  try {
    await writeSample(data.test);
    await trainCoreModel(train, test);
    await trainEarlyExitModel(train, validation, test);
  } finally {
    tf.dispose([train.x, train.y, validation.x, validation.y, test.x, test.y]);
  }
  console.log(`wrote ${publicDir}`);
}

await main();
