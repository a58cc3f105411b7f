/**
 * Trains the mixture-of-experts model the moe-router live example runs, with fixed seeds, and
 * writes it to `apps/docs/public/models/fashion-moe-router/` (served with the site):
 *
 * - `model.json` + weights: each 28x28 image cut into 16 patches of 7x7 pixels, each patch a token
 *   of 32 features (`patches`, a 7x7 convolution of stride 7), then a mixture of 8 feed-forward
 *   experts (32 -> 64 -> 32) that routes every token to its top 2 (`moe`; training capacity
 *   factor 1.25, load-balancing loss 0.01), a residual connection, and a linear classifier over
 *   the 16 tokens;
 * - `settings.json`: the test accuracy, dropped pairs and FLOPs per image of the settings the page
 *   offers (experts per token x inference capacity factor), on the 10,000 Fashion-MNIST test
 *   images in batches of 64 (the page's default batch);
 * - `training.json`: how it was trained.
 *
 * The page classifies the same 256 sample images as the other live examples
 * (`data/fashion-mnist-sample.*`, written by train-models.ts). A model file records the op-set
 * versions it was written with, so rerun this when an op the model uses changes. From the
 * repository root (about 2 minutes on two cores, on wasm):
 *
 *     npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-moe-router-model.ts
 *
 * (`--tsconfig` resolves `@dynn/*` to the package sources, as the site and the tests do.)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cosineDecay,
  createModel,
  createRuntime,
  fit,
  GraphBuilder,
  type Model,
  saveModel,
  useBackend,
} from '@dynn/core';
import { loadFashionMnist } from '@dynn/data-fashion-mnist';
import { addMoeLayer, moeOptions, moeRouter } from '@dynn/moe-router';
import * as tf from '@tensorflow/tfjs-core';
import {
  MOE_CAPACITY_FACTORS,
  MOE_EXPERTS,
  MOE_KS,
  MOE_MEASURE_BATCH,
  MOE_PATCH,
} from '../src/moe-router-settings.js';

/** Seed of the weights and the shuffles. */
const SEED = 1;
const EPOCHS = 2;
const BATCH_SIZE = 64;
const LEARNING_RATE = 3e-3;
/** Training images (the first of the 60,000). */
const TRAIN_IMAGES = 30_000;
/** Features of each patch token, and hidden units of each expert. */
const TOKEN_WIDTH = 32;
const EXPERT_HIDDEN = 64;
/** Experts per token the layer trains with. */
const K = 2;
const TRAIN_CAPACITY_FACTOR = 1.25;
const BALANCE_LOSS = 0.01;

const outDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'public', 'models', 'fashion-moe-router');

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** Test accuracy, dropped pairs and FLOPs per image of one setting, in batches of the page's size. */
async function measure(
  model: Model,
  x: tf.Tensor,
  y: tf.Tensor,
  k: number,
  capacityFactor: number,
): Promise<{
  k: number;
  capacityFactor: number;
  accuracy: number;
  droppedShare: number;
  expertMflops: number;
  mflops: number;
}> {
  const labels = await y.data();
  const count = x.shape[0]!;
  const tokens = count * (28 / MOE_PATCH) ** 2;
  let correct = 0;
  let dropped = 0;
  let expertFlops = 0;
  let flops = 0;
  for (let start = 0; start < count; start += MOE_MEASURE_BATCH) {
    const rows = Math.min(MOE_MEASURE_BATCH, count - start);
    const batch = tf.slice(x, start, rows);
    const { outputs, report } = await model.run(batch, { options: moeOptions({ k, capacityFactor }) });
    const predicted = tf.argMax(outputs.logits!, -1);
    const p = await predicted.data();
    for (let i = 0; i < rows; i++) if (p[i] === labels[start + i]) correct++;
    dropped += report!.nodes.find((n) => n.name === 'moe')!.stats.dropped as number;
    for (const node of report!.nodes) if (node.name.startsWith('moe/experts/')) expertFlops += node.flops;
    flops += report!.flops;
    tf.dispose([batch, predicted, ...Object.values(outputs)]);
  }
  return {
    k,
    capacityFactor,
    accuracy: correct / count,
    droppedShare: dropped / (tokens * k),
    expertMflops: expertFlops / count / 1e6,
    mflops: flops / count / 1e6,
  };
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
  tf.dispose([trainAll.images, trainAll.labels]);
  const runtime = createRuntime({ plugins: [moeRouter()] });
  const b = new GraphBuilder(runtime);
  const pixels = b.input('pixels', 'float32', ['batch', 28, 28, 1]);
  // Patch tokens: [batch, 4, 4, 32], every position a token of the MoE layer.
  const tokens = b.add(
    'core.Conv2D',
    pixels,
    {
      filters: TOKEN_WIDTH,
      kernelSize: [MOE_PATCH, MOE_PATCH],
      strides: [MOE_PATCH, MOE_PATCH],
      padding: 'valid',
    },
    { name: 'patches' },
  );
  const moe = addMoeLayer(b, runtime, tokens, {
    name: 'moe',
    experts: MOE_EXPERTS,
    expert: { hidden: EXPERT_HIDDEN },
    router: 'top-k',
    k: K,
    capacityFactor: TRAIN_CAPACITY_FACTOR,
    balanceLoss: BALANCE_LOSS,
  });
  const mixed = b.add('core.Add', [tokens, moe], {}, { name: 'residual' });
  const flat = b.add('core.Flatten', mixed, {}, { name: 'flatten' });
  const logits = b.add('core.Dense', flat, { units: 10 }, { name: 'classifier' });
  const model = createModel(runtime, b.build({ logits }), { seed: SEED });
  const optimizer = tf.train.adam(LEARNING_RATE);
  try {
    console.log(`training on ${TRAIN_IMAGES} images, top-${K} of ${MOE_EXPERTS} experts per patch`);
    const started = performance.now();
    const history = await fit(model, train, {
      epochs: EPOCHS,
      batchSize: BATCH_SIZE,
      optimizer,
      learningRate: cosineDecay(LEARNING_RATE),
      seed: SEED,
    });
    const trainSeconds = (performance.now() - started) / 1000;
    console.log(`  ${trainSeconds.toFixed(0)} s, loss ${history.epochs.at(-1)!.loss.toFixed(3)}`);
    const settings = [];
    for (const k of MOE_KS) {
      for (const capacityFactor of MOE_CAPACITY_FACTORS) {
        const row = await measure(model, test.images, test.labels, k, capacityFactor);
        console.log(
          `  k ${k}, capacity ${capacityFactor || 'dropless'}: ${(row.accuracy * 100).toFixed(2)}%, ` +
            `${(row.droppedShare * 100).toFixed(1)}% of pairs dropped, ${row.expertMflops.toFixed(3)} expert MFLOPs`,
        );
        settings.push(row);
      }
    }
    await saveModel(model, outDir);
    await writeJson(join(outDir, 'settings.json'), {
      description:
        'Accuracy on the 10,000 Fashion-MNIST test images of each setting (experts per token k, inference capacity factor; 0: dropless), ' +
        'in batches of 64 images (1,024 tokens share the capacity), the share of token-expert pairs dropped, and FLOPs per image as the compute report counts them.',
      testImages: test.images.shape[0],
      batchImages: MOE_MEASURE_BATCH,
      experts: MOE_EXPERTS,
      trainedK: K,
      ks: MOE_KS,
      capacityFactors: MOE_CAPACITY_FACTORS,
      settings,
    });
    await writeJson(join(outDir, 'training.json'), {
      script: 'apps/docs/scripts/train-moe-router-model.ts',
      dataset: 'Fashion-MNIST (Zalando Research, MIT)',
      backend: tf.getBackend(),
      seed: SEED,
      epochs: EPOCHS,
      batchSize: BATCH_SIZE,
      optimizer: `Adam, learning rate ${LEARNING_RATE} with cosine decay`,
      trainImages: TRAIN_IMAGES,
      network: `16 patch tokens of ${MOE_PATCH}x${MOE_PATCH} pixels (Conv2D ${TOKEN_WIDTH} filters, stride ${MOE_PATCH}); addMoeLayer: ${MOE_EXPERTS} feed-forward experts ${TOKEN_WIDTH} -> ${EXPERT_HIDDEN} -> ${TOKEN_WIDTH}, router top-k, k ${K}; residual add; Flatten; Dense(10)`,
      training: `capacityFactor ${TRAIN_CAPACITY_FACTOR} (tokens past it dropped in training), balanceLoss ${BALANCE_LOSS}`,
      trainSeconds: Math.round(trainSeconds),
      params: model.paramCount,
    });
  } finally {
    optimizer.dispose();
    model.dispose();
    tf.dispose([train.x, train.y, test.images, test.labels]);
  }
  console.log(`wrote ${outDir}`);
}

await main();
