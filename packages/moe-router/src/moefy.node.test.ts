import {
  createModel,
  createRng,
  fit,
  GraphBuilder,
  type Model,
  shuffledIndices,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import { guardLeaks, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { moefyModel } from './moefy.js';
import { moeOptions } from './options.js';
import { runtime } from './test-models.js';

interface Split {
  x: tf.Tensor2D;
  y: tf.Tensor1D;
}

const EXPERTS = 8;
const K = 2;

/** Accuracy and measured FLOPs of `model` on `split`, every expert active when `all`. */
async function measure(
  model: Model,
  split: Split,
  all = false,
): Promise<{ accuracy: number; flops: number }> {
  const { outputs, report } = await model.run(split.x, all ? { options: moeOptions({ k: EXPERTS }) } : {});
  const predicted = tf.argMax(outputs.logits!, -1);
  const [p, y] = [await predicted.data(), await split.y.data()];
  tf.dispose([predicted, outputs.logits!]);
  return { accuracy: p.filter((v, i) => v === y[i]).length / p.length, flops: report!.flops };
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

describe('MoEfication of a trained MLP on the UCI digits (real data, wasm)', () => {
  guardLeaks();
  let train: Split;
  let test: Split;
  let dense: Model;

  beforeAll(async () => {
    await useBackend('wasm');
    const digits = await loadDigits();
    // A seeded shuffle, then 70% / 30%.
    const order = shuffledIndices(digits.count, createRng(11));
    const cut = Math.round(digits.count * 0.7);
    const split = (from: number, to: number): Split => {
      const { features, labels } = digits.toTensors(order.subarray(from, to));
      return { x: features, y: labels };
    };
    [train, test] = [split(0, cut), split(cut, digits.count)];
    // The feed-forward block: 64 pixels -> 128 ReLU neurons -> 10 logits.
    const b = new GraphBuilder(runtime);
    const x = b.input('pixels', 'float32', ['batch', 64]);
    const h = b.add('core.Dense', x, { units: 128, activation: 'relu' }, { name: 'hidden' });
    const graph = b.build({ logits: b.add('core.Dense', h, { units: 10 }, { name: 'out' }) });
    dense = createModel(runtime, graph, { seed: 1 });
    const optimizer = tf.train.adam(3e-3);
    await fit(dense, train, { epochs: 15, batchSize: 32, optimizer, seed: 1 });
    optimizer.dispose();
  });

  afterAll(() => {
    dense.dispose();
    tf.dispose([train.x, train.y, test.x, test.y]);
  });

  it('keeps the dense accuracy with every expert; at top-2 of 8, a short tuning brings it within 3 points', async () => {
    const reference = await measure(dense, test);
    const moe = await moefyModel(dense, { node: 'hidden', experts: EXPERTS, k: K, method: 'cluster' });
    const all = await measure(moe, test, true);
    const untuned = await measure(moe, test);

    // The same experts with a random router instead of MoEfication's similarity router.
    const random = await moefyModel(dense, { node: 'hidden', experts: EXPERTS, k: K, method: 'cluster' });
    const kernel = random.params.get('hidden/kernel')!;
    const values = seededNormal(kernel.shape, { seed: 5, std: 0.5 });
    kernel.assign(values);
    values.dispose();
    const randomRouter = await measure(random, test);
    random.dispose();

    // 8 epochs of 40 steps: 320 steps of core fit, router and experts together.
    const optimizer = tf.train.adam(2e-3);
    await fit(moe, train, { epochs: 8, batchSize: 32, optimizer, seed: 2 });
    optimizer.dispose();
    const tuned = await measure(moe, test);
    moe.dispose();
    console.log(
      `digits, ${EXPERTS} experts of ${128 / EXPERTS} neurons: dense ${pct(reference.accuracy)}, every expert ${pct(all.accuracy)}; ` +
        `top-${K}: untuned ${pct(untuned.accuracy)} (random router ${pct(randomRouter.accuracy)}), tuned ${pct(tuned.accuracy)} ` +
        `at ${(tuned.flops / reference.flops).toFixed(2)}x the dense FLOPs`,
    );

    expect(all.accuracy).toBe(reference.accuracy);
    // Measured on three splits and seeds (this one the first): tuned 95.5-96.8% against dense 95.5-98.0%.
    expect(tuned.accuracy).toBeGreaterThanOrEqual(reference.accuracy - 0.03);
    // Untuned 70-78%: the similarity router already picks useful experts; a random router, 26-39%.
    expect(untuned.accuracy).toBeGreaterThan(randomRouter.accuracy + 0.2);
    expect(tuned.accuracy).toBeGreaterThan(untuned.accuracy + 0.1);
    // Measured, not estimated: the experts computed only the tokens routed to them.
    expect(tuned.flops).toBeLessThan(0.5 * reference.flops);
    expect(all.flops).toBeGreaterThan(reference.flops);
  });
});
