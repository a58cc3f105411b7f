/**
 * Trains the nested network the sorted-net live example runs, with fixed seeds, and writes it to
 * `apps/docs/public/models/fashion-sorted-net/` (served with the site):
 *
 * - `model.json` + weights: a residual CNN (3 stages of 8, 16 and 32 channels at 28x28, 14x14 and
 *   7x7, two residual blocks each) nested by `nestModel`, trained once with sorted training (the
 *   sandwich rule: each step the largest, the smallest and one random sub-network of widths
 *   0.25/0.5/0.75/1 x depths 0/1/2, the smaller ones distilling from the largest in place), then
 *   its batch-norm statistics recalibrated for each of those 12 sub-networks (saved as state
 *   variants);
 * - `sub-networks.json`: each sub-network's accuracy on the 10,000 Fashion-MNIST test images and
 *   FLOPs per image from the compute report;
 * - `training.json`: how it was trained.
 *
 * The page classifies the same 256 sample images as the other live examples
 * (`data/fashion-mnist-sample.*`, written by train-models.ts). A model file records the op-set
 * versions it was written with, so rerun this when an op the model uses changes. From the
 * repository root (about 10 minutes on two cores, on wasm):
 *
 *     npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-sorted-net-model.ts
 *
 * (`--tsconfig` resolves `@dynn/*` to the package sources, as the site and the tests do.)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cosineDecay, createModel, createRuntime, fit, saveModel, useBackend } from '@dynn/core';
import { loadFashionMnist } from '@dynn/data-fashion-mnist';
import {
  calibrateBatchNorm,
  nestModel,
  residualCnnGraph,
  type SubNetwork,
  sortedNet,
  sortedObjective,
  sortedWindows,
  subNetworkOptions,
} from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';

/** Seed of the weights, the shuffles and the sampled sub-networks. */
const SEED = 1;
const EPOCHS = 1;
const BATCH_SIZE = 64;
const LEARNING_RATE = 3e-3;
/** Training images (the first of the 60,000). */
const TRAIN_IMAGES = 24_000;
/** Training images each sub-network's batch-norm statistics are computed on. */
const CALIBRATION_IMAGES = 2048;
/** Channels per stage and residual blocks per stage of the full network. */
const STAGE_WIDTHS = [8, 16, 32];
const BLOCKS = 2;
/** Channel counts round to a multiple of this. */
const MULTIPLE = 2;
/** The sub-networks trained, calibrated and offered on the page. */
const WIDTHS = [0.25, 0.5, 0.75, 1];
const DEPTHS = [0, 1, 2];
/** Sub-networks per training step. */
const PER_STEP = 3;

const outDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'public', 'models', 'fashion-sorted-net');

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** Accuracy on the test images and FLOPs per image (compute report), in batches of 500. */
async function measure(
  model: Awaited<ReturnType<typeof nestModel>>,
  x: tf.Tensor,
  y: tf.Tensor,
  sub: SubNetwork,
): Promise<{ accuracy: number; mflops: number }> {
  const labels = await y.data();
  const count = x.shape[0]!;
  let correct = 0;
  let flops = 0;
  for (let start = 0; start < count; start += 500) {
    const rows = Math.min(500, count - start);
    const batch = tf.slice(x, start, rows);
    const { outputs, report } = await model.run(batch, { options: subNetworkOptions(sub), report: true });
    const predicted = tf.argMax(outputs.logits!, -1);
    const p = await predicted.data();
    for (let i = 0; i < rows; i++) if (p[i] === labels[start + i]) correct++;
    flops += report!.flops;
    tf.dispose([batch, predicted, ...Object.values(outputs)]);
  }
  return { accuracy: correct / count, mflops: flops / count / 1e6 };
}

async function main(): Promise<void> {
  await useBackend('wasm');
  const data = await loadFashionMnist();
  const trainAll = data.train.toTensors();
  const test = data.test.toTensors();
  const train = {
    x: tf.slice(trainAll.images, 0, TRAIN_IMAGES),
    y: tf.slice(trainAll.labels, 0, TRAIN_IMAGES),
  };
  const calibration = tf.slice(trainAll.images, 0, CALIBRATION_IMAGES);
  tf.dispose([trainAll.images, trainAll.labels]);
  const runtime = createRuntime({ plugins: [sortedNet()] });
  const plain = createModel(runtime, residualCnnGraph(runtime, { widths: STAGE_WIDTHS, blocks: BLOCKS }), {
    seed: SEED,
  });
  const nested = await nestModel(plain, { multiple: MULTIPLE, sort: 'none' });
  plain.dispose();
  const grid: SubNetwork[] = WIDTHS.flatMap((width) => DEPTHS.map((depth) => ({ width, depth })));
  const optimizer = tf.train.adam(LEARNING_RATE);
  try {
    console.log(`training on ${TRAIN_IMAGES} images, ${PER_STEP} sub-networks per step`);
    const started = performance.now();
    const history = await fit(nested, train, {
      epochs: EPOCHS,
      batchSize: BATCH_SIZE,
      optimizer,
      learningRate: cosineDecay(LEARNING_RATE),
      seed: SEED,
      windows: sortedWindows({
        widths: WIDTHS,
        depths: DEPTHS,
        strategy: 'sandwich',
        perStep: PER_STEP,
        seed: SEED,
      }),
      loss: sortedObjective(),
    });
    const trainSeconds = (performance.now() - started) / 1000;
    console.log(`  ${trainSeconds.toFixed(0)} s, loss ${history.epochs.at(-1)!.loss.toFixed(3)}`);
    const calibrated = await calibrateBatchNorm(nested, grid, { x: calibration }, { batchSize: 256 });
    try {
      const rows = [];
      for (const sub of grid) {
        const { accuracy, mflops } = await measure(calibrated, test.images, test.labels, sub);
        console.log(
          `  width ${sub.width}, depth ${sub.depth}: ${(accuracy * 100).toFixed(2)}% at ${mflops.toFixed(3)} MFLOPs`,
        );
        rows.push({ ...sub, accuracy, mflops });
      }
      await saveModel(calibrated, outDir);
      await writeJson(join(outDir, 'sub-networks.json'), {
        description:
          'Accuracy of each sub-network on the 10,000 Fashion-MNIST test images, and its FLOPs per image as the compute report counts them.',
        testImages: test.images.shape[0],
        widths: WIDTHS,
        depths: DEPTHS,
        subNetworks: rows,
      });
      await writeJson(join(outDir, 'training.json'), {
        script: 'apps/docs/scripts/train-sorted-net-model.ts',
        dataset: 'Fashion-MNIST (Zalando Research, MIT)',
        backend: tf.getBackend(),
        seed: SEED,
        epochs: EPOCHS,
        batchSize: BATCH_SIZE,
        optimizer: `Adam, learning rate ${LEARNING_RATE} with cosine decay`,
        trainImages: TRAIN_IMAGES,
        network: `residualCnnGraph: stages of ${STAGE_WIDTHS.join('/')} channels, ${BLOCKS} residual blocks each; nestModel multiple ${MULTIPLE}`,
        training: `sortedWindows sandwich, ${PER_STEP} sub-networks per step of widths ${WIDTHS.join('/')} x depths ${DEPTHS.join('/')}; sortedObjective (in-place distillation)`,
        calibration: `calibrateBatchNorm on the first ${CALIBRATION_IMAGES} training images, for each of the ${grid.length} sub-networks`,
        params: calibrated.paramCount,
      });
    } finally {
      calibrated.dispose();
    }
  } finally {
    optimizer.dispose();
    nested.dispose();
    tf.dispose([train.x, train.y, calibration, test.images, test.labels]);
  }
  console.log(`wrote ${outDir}`);
}

await main();
