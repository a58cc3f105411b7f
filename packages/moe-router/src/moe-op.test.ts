import { createModel, isDynnError, type Model, Trainer } from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks, seededNormal, toleranceFor } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import type { MoeLayerOptions } from './moe-layer.js';
import { resolvedCombine } from './moe-op.js';
import { moeOptions } from './options.js';
import { routeTokens, softmaxRows, topK } from './routing.js';
import { moeGraph, runtime } from './test-models.js';

const D = 4;
const EXPERTS = 4;

/** A MoE model whose router has clear margins: its kernel is set to larger values. */
function model(options: Partial<MoeLayerOptions> = {}, seed = 3): Model {
  const m = createModel(runtime, moeGraph({ experts: EXPERTS, ...options }, D), { seed });
  const kernel = m.params.get('moe/kernel') as tf.Variable;
  const wide = seededNormal(kernel.shape, { seed: seed + 10, std: 1.5 });
  kernel.assign(wide);
  wide.dispose();
  return m;
}

/** The smallest gap, over tokens, between the k-th and (k+1)-th router probability. */
async function minMargin(m: Model, x: tf.Tensor, k: number): Promise<number> {
  const logits = tf.tidy(() => tf.matMul(tf.reshape(x, [-1, D]), m.params.get('moe/kernel')!));
  const probs = softmaxRows((await logits.data()) as Float32Array, EXPERTS);
  logits.dispose();
  let margin = Infinity;
  for (let t = 0; t < probs.length / EXPERTS; t++) {
    const row = Array.from(probs.subarray(t * EXPERTS, (t + 1) * EXPERTS)).sort((a, b) => b - a);
    if (k < EXPERTS) margin = Math.min(margin, row[k - 1]! - row[k]!);
  }
  return margin;
}

/**
 * The reference: every expert on every token (plain tfjs, from the model's weights), weighted by
 * the routing's combine weights; pairs the routing did not keep weigh 0.
 */
async function reference(m: Model, x: tf.Tensor, options: Partial<MoeLayerOptions>): Promise<tf.Tensor> {
  const k = options.k ?? 2;
  const router = options.router ?? 'top-k';
  const p = (name: string) => m.params.get(name)!;
  const x2 = tf.reshape(x, [-1, D]);
  const logits = tf.matMul(x2, p('moe/kernel'));
  const probsValues = softmaxRows((await logits.data()) as Float32Array, EXPERTS);
  const routing = routeTokens(probsValues, EXPERTS, {
    router,
    k,
    capacityFactor: options.evalCapacityFactor ?? 0,
    dropPolicy: options.dropPolicy ?? 'position',
    training: false,
    sinkhornIterations: 8,
  });
  const tokens = routing.tokens;
  const mode = resolvedCombine({ combine: options.combine ?? 'auto', router, k });
  const weights = new Float32Array(tokens * EXPERTS);
  for (let t = 0; t < tokens; t++) {
    const row = probsValues.subarray(t * EXPERTS, (t + 1) * EXPERTS);
    const chosen = Array.from(row.keys()).filter((e) => routing.chosen[t * EXPERTS + e]);
    const sum = chosen.reduce((a, e) => a + row[e]!, 0);
    for (const e of chosen) {
      weights[t * EXPERTS + e] = mode === 'unit' ? 1 : mode === 'softmax' ? row[e]! : row[e]! / sum;
    }
  }
  routing.expertTokens.forEach((rows, e) => {
    const kept = new Set(rows);
    for (let t = 0; t < tokens; t++) if (!kept.has(t)) weights[t * EXPERTS + e] = 0;
  });
  const out = tf.tidy(() => {
    const expert = (prefix: string) =>
      tf.add(
        tf.matMul(
          tf.relu(tf.add(tf.matMul(x2, p(`${prefix}/up/kernel`)), p(`${prefix}/up/bias`))),
          p(`${prefix}/down/kernel`),
        ),
        p(`${prefix}/down/bias`),
      );
    let y: tf.Tensor = tf.zeros([tokens, D]);
    for (let e = 0; e < EXPERTS; e++) {
      const w = tf.tensor2d(
        weights.filter((_, i) => i % EXPERTS === e),
        [tokens, 1],
      );
      y = tf.add(y, tf.mul(expert(`moe/experts/${e}`), w));
    }
    for (let s = 0; s < ((options.shared as number | undefined) ?? 0); s++)
      y = tf.add(y, expert(`moe/shared/${s}`));
    if (options.outputBias) y = tf.add(y, p('moe/bias'));
    return tf.reshape(y, x.shape);
  });
  tf.dispose([x2, logits]);
  return out;
}

const CASES: Partial<MoeLayerOptions>[] = [
  { router: 'top-k', k: 2 },
  { router: 'switch', k: 1 },
  { router: 'gshard', k: 2, combine: 'softmax' },
  { router: 'top-k', k: 2, combine: 'unit' },
  { router: 'expert-choice', k: 1 },
  { router: 'sinkhorn', k: 1 },
  { router: 'top-k', k: 1, shared: 1, outputBias: true },
  { router: 'switch', k: 1, evalCapacityFactor: 0.5, dropPolicy: 'probs' },
];

describeEachBackend('moe-router.MoE', (backend) => {
  for (const options of CASES) {
    it(`equals every expert on every token weighted by the routing: ${JSON.stringify(options)}`, async () => {
      const m = model(options);
      const x = seededNormal([2, 3, D], { seed: 7 });
      expect(await minMargin(m, x, options.k ?? 2)).toBeGreaterThan(1e-3);
      await expectNoLeaks(async () => {
        const expected = await reference(m, x, options);
        const { outputs, report } = await m.run(x);
        await expectClose(outputs.y!, expected, { tolerance: toleranceFor(backend) });
        const stats = report!.nodes.find((n) => n.name === 'moe')!.stats;
        const load = stats.load as number[];
        // Each expert's first layer computed exactly the tokens routed to it, no more.
        for (let e = 0; e < EXPERTS; e++) {
          const node = report!.nodes.find((n) => n.name === `moe/experts/${e}/up`);
          expect(node?.rows ?? 0).toBe(load[e]);
        }
        // The report counts what ran; `fullFlops` is every expert on every token.
        const expertFlops = report!.nodes.filter((n) => n.parent === 'moe').reduce((a, n) => a + n.flops, 0);
        expect(expertFlops).toBeGreaterThan(0);
        expect(report!.flops).toBeGreaterThanOrEqual(expertFlops);
        if (!options.shared) expect(report!.flops).toBeLessThan(report!.fullFlops);
        tf.dispose([expected, outputs.y!]);
      });
      x.dispose();
      m.dispose();
    });
  }

  it('drops tokens past the inference capacity, and a run option lifts the limit', async () => {
    const m = model({ router: 'switch', k: 1, evalCapacityFactor: 0.5 });
    const x = seededNormal([4, 3, D], { seed: 8 });
    const limited = await m.run(x);
    const stats = limited.report!.nodes.find((n) => n.name === 'moe')!.stats;
    expect(stats.capacity).toBe(2); // ceil(12 tokens * 1 * 0.5 / 4 experts)
    expect(stats.dropped).toBeGreaterThan(0);
    expect((stats.load as number[]).every((n) => n <= 2)).toBe(true);
    expect(stats.unrouted).toBe(stats.dropped);
    // A dropped token's output is 0 (a residual connection around the layer carries it).
    const rows = (await tf.reshape(limited.outputs.y!, [12, D]).array()) as number[][];
    expect(rows.filter((r) => r.every((v) => v === 0)).length).toBe(stats.dropped);
    const dropless = await m.run(x, { options: moeOptions({ capacityFactor: 0 }) });
    const all = dropless.report!.nodes.find((n) => n.name === 'moe')!.stats;
    expect(all.dropped).toBe(0);
    expect((all.load as number[]).reduce((a, b) => a + b, 0)).toBe(12);
    tf.dispose([limited.outputs.y!, dropless.outputs.y!, x]);
    m.dispose();
  });

  it('trains router and experts with the balance and z losses, and balances by bias', async () => {
    const m = model({
      router: 'top-k',
      k: 2,
      balanceLoss: 0.01,
      zLoss: 0.001,
      biasUpdateRate: 0.01,
      noise: 'jitter',
    });
    const x = seededNormal([8, 3, D], { seed: 9 });
    const y = tf.tidy(() => tf.tanh(tf.mul(x, 2)));
    const before = new Map([...m.params].map(([name, v]) => [name, v.clone()]));
    const trainer = new Trainer(m, { loss: 'meanSquaredError', optimizer: tf.train.adam(0.05) });
    // The first step creates the optimizer's slots; later steps must allocate nothing that stays.
    const first = await trainer.step(x, y, 1);
    let last = first;
    await expectNoLeaks(async () => {
      for (let step = 2; step <= 6; step++) last = await trainer.step(x, y, step);
    });
    expect(last.loss).toBeLessThan(first.loss);
    const changed = async (name: string) => {
      const [a, b] = await Promise.all([before.get(name)!.data(), m.params.get(name)!.data()]);
      return a.some((v, i) => v !== b[i]);
    };
    expect(await changed('moe/kernel')).toBe(true);
    for (let e = 0; e < EXPERTS; e++) expect(await changed(`moe/experts/${e}/up/kernel`)).toBe(true);
    const bias = m.state.get('moe/expertBias')!;
    expect(Array.from(await bias.data()).some((v) => v !== 0)).toBe(true);
    // The report shows the bias the choice used, before this run's update.
    const used = Array.from(await bias.data());
    const { losses, report } = await m.run(x, { training: true });
    expect(report!.nodes.find((n) => n.name === 'moe')!.stats.expertBias).toEqual(used);
    expect(losses.map((l) => l.name).sort()).toEqual(['balance', 'z']);
    tf.dispose([...losses.map((l) => l.value), x, y, ...before.values()]);
    m.dispose();
  });
});

it('breaks ties to the lowest expert index', () => {
  expect(topK(Float32Array.of(0.25, 0.25, 0.25, 0.25), 0, 4, 2)).toEqual([0, 1]);
  expect(topK(Float32Array.of(0.1, 0.4, 0.1, 0.4), 0, 4, 3)).toEqual([1, 3, 0]);
});

it('refuses impossible layers and bad inputs with errors naming the node and the fix', async () => {
  const refuse = (options: Partial<MoeLayerOptions>, pattern: RegExp) => {
    let error: unknown;
    try {
      createModel(runtime, moeGraph({ experts: EXPERTS, ...options }, D)).dispose();
    } catch (e) {
      error = e;
    }
    expect(isDynnError(error)).toBe(true);
    expect((error as Error).message).toMatch(/'moe'/);
    expect((error as Error).message).toMatch(pattern);
  };
  refuse({ k: 5 }, /k is 5 but the layer has 4 experts/);
  refuse({ router: 'switch', k: 2 }, /top-1: set k to 1/);
  refuse({ router: 'expert-choice', biasUpdateRate: 0.1 }, /expert choice is balanced/);
  const m = model();
  const x = tf.fill([1, 3, D], Number.NaN);
  await expect(m.run(x, { checkInputs: false })).rejects.toThrow(/'moe'.*NaN|NaN.*'moe'/s);
  await expect(m.run(tf.zeros([1, 3, D]), { options: { 'moe-router': { k: 0 } } })).rejects.toThrow(
    /'moe-router'\.k must be an integer >= 1/,
  );
  x.dispose();
  m.dispose();
});
