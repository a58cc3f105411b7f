/**
 * Trains the causal character model the sparse-attention live example runs, with fixed seeds, and
 * writes it to `apps/docs/public/models/austen-sparse-attention/` (served with the site):
 *
 * - `model.json` + weights: `sparseCharGraph` (../src/sparse-attention-model.ts): characters
 *   embedded in 64 features, two pre-norm blocks of a `sparse-attention.SparseAttention` layer (4
 *   heads of 16: the first 2 on a causal sliding window of 32 characters with ALiBi distances,
 *   blocks of 16; the last 2 routing heads, 4 clusters, causal windows of 16 characters) and a
 *   relu MLP of 128, then a head over the vocabulary. No position embedding, so the model runs on
 *   any length;
 * - `training.json`: how it was trained, its bits per character on held-out text, and its
 *   vocabulary (the page encodes what the visitor types with it).
 *
 * Trained on the first 90% of Jane Austen's novels (`loadAusten`), measured on windows of the
 * last 10%. A model file records the op-set versions it was written with, so rerun this when an
 * op the model uses changes. From the repository root (about three minutes on two cores, on
 * wasm):
 *
 *     npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-sparse-attention-model.ts
 *
 * (`--tsconfig` resolves `@dynn/*` to the package sources, as the site and the tests do.)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cosineDecay, createModel, createRuntime, saveModel, Trainer, useBackend } from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import { sparseAttention } from '@dynn/sparse-attention';
import * as tf from '@tensorflow/tfjs-core';
import { MODEL_LAYERS, MODEL_WIDTH, sparseCharGraph } from '../src/sparse-attention-model.js';

/** Seed of the weights. */
const SEED = 1;
const STEPS = 600;
const BATCH_SIZE = 16;
/** Characters per training window. */
const CONTEXT = 128;
const LEARNING_RATE = 3e-3;
/** Held-out windows the bits per character are measured on. */
const EVAL_WINDOWS = 256;

const outDir = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'public',
  'models',
  'austen-sparse-attention',
);

/** Windows of `length + 1` characters of `ids[from, to)` at seeded offsets: inputs and next-character targets. */
function windows(
  ids: ArrayLike<number>,
  from: number,
  to: number,
  count: number,
  length: number,
  seed: number,
) {
  const x = new Int32Array(count * length);
  const y = new Int32Array(count * length);
  let state = seed;
  for (let i = 0; i < count; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const start = from + (state % (to - from - length - 1));
    for (let t = 0; t < length; t++) {
      x[i * length + t] = ids[start + t]!;
      y[i * length + t] = ids[start + t + 1]!;
    }
  }
  return { x: tf.tensor2d(x, [count, length], 'int32'), y: tf.tensor2d(y, [count, length], 'int32') };
}

async function main(): Promise<void> {
  await useBackend('wasm');
  const austen = await loadAusten();
  const vocab = austen.vocab.length;
  const split = Math.floor(austen.ids.length * 0.9);
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const model = createModel(runtime, sparseCharGraph(runtime, vocab), { seed: SEED });
  const optimizer = tf.train.adam(LEARNING_RATE);
  const trainer = new Trainer(model, { loss: 'sparseCategoricalCrossentropy', optimizer });
  const schedule = cosineDecay(LEARNING_RATE, LEARNING_RATE / 10);
  try {
    console.log(`training ${STEPS} steps of ${BATCH_SIZE} x ${CONTEXT} characters of Austen`);
    const started = performance.now();
    for (let step = 0; step < STEPS; step++) {
      trainer.setLearningRate(schedule(step, STEPS));
      const batch = windows(austen.ids, 0, split, BATCH_SIZE, CONTEXT, step + 1);
      const { loss } = await trainer.step(batch.x, batch.y, step);
      tf.dispose([batch.x, batch.y]);
      if ((step + 1) % 50 === 0) console.log(`  step ${step + 1}: ${(loss / Math.LN2).toFixed(2)} bits/char`);
    }
    const trainSeconds = (performance.now() - started) / 1000;

    const test = windows(austen.ids, split, austen.ids.length, EVAL_WINDOWS, CONTEXT, 7);
    const predicted = await model.predict(test.x);
    const nats = tf.tidy(() => tf.mean(tf.losses.softmaxCrossEntropy(tf.oneHot(test.y, vocab), predicted)));
    const bitsPerChar = (await nats.data())[0]! / Math.LN2;
    tf.dispose([test.x, test.y, predicted, nats]);
    console.log(
      `  ${trainSeconds.toFixed(0)} s, ${bitsPerChar.toFixed(3)} bits per character on held-out text`,
    );

    await saveModel(model, outDir);
    await mkdir(outDir, { recursive: true });
    await writeFile(
      join(outDir, 'training.json'),
      `${JSON.stringify(
        {
          script: 'apps/docs/scripts/train-sparse-attention-model.ts',
          dataset:
            "Jane Austen's six novels (public domain; janeaustenr, MIT): the first 90% to train, windows of the rest to measure",
          network: `Embedding(${MODEL_WIDTH}); ${MODEL_LAYERS} x [LayerNorm, SparseAttention (4 heads of 16: 2 on a causal window of 32 with ALiBi, blocks of 16; 2 routing, 4 clusters, causal windows of 16), residual, LayerNorm, Dense(${2 * MODEL_WIDTH}, relu), Dense(${MODEL_WIDTH}), residual]; LayerNorm; Dense(vocabulary)`,
          optimizer: `Adam, learning rate ${LEARNING_RATE} with cosine decay to a tenth`,
          seed: SEED,
          steps: STEPS,
          batchSize: BATCH_SIZE,
          context: CONTEXT,
          backend: tf.getBackend(),
          trainSeconds: Math.round(trainSeconds),
          params: model.paramCount,
          bitsPerChar: Number(bitsPerChar.toFixed(4)),
          vocab: austen.vocab,
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    trainer.dispose();
    optimizer.dispose();
    model.dispose();
  }
  console.log(`wrote ${outDir}`);
}

await main();
