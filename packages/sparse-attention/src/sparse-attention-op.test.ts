import {
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  isDynnError,
  loadModel,
  type Model,
  saveModel,
  Trainer,
} from '@dynn/core';
import { expectClose, expectNoLeaks, seededNormal, toleranceFor } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import type { Pattern } from './pattern.js';
import { sparseAttention } from './plugin.js';
import { planRouting, routingAttention, unitNormalize } from './routing-attention.js';
import type { SparseAttentionOptions } from './sparse-attention-layer.js';
import { attentionGraph, attentionModel, describeOnCpuBackends, runtime } from './test-models.js';

const D = 8;
const CAUSAL_WINDOW: Pattern = {
  type: 'and',
  of: [{ type: 'causal' }, { type: 'window', before: 8, after: 0 }],
};

/** core.MultiHeadAttention on [batch, time, D] (node `mha`), self-attention. */
function mhaGraph(causal: boolean, time: number | string = 'time'): Graph {
  const b = new GraphBuilder(createRuntime());
  const x = b.input('x', 'float32', ['batch', time, D]);
  return b.build({
    y: b.add('core.MultiHeadAttention', [x, x], { numHeads: 2, keyDim: 4, causal }, { name: 'mha' }),
  });
}

/** Copies a model's parameters into another whose node has the same local names. */
function copyWeights(from: Model, fromNode: string, to: Model, toNode: string): void {
  for (const [name, value] of from.params) {
    const local = name.slice(fromNode.length + 1);
    (to.params.get(`${toNode}/${local}`) as tf.Variable).assign(value);
  }
}

/** The error `make` throws. */
function thrown(make: () => unknown): Error {
  try {
    make();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

// The layer's wiring, training, routing heads, reports and saving compute nothing a GPU computes
// differently: the kernel's numerics are held to dense attention on every backend in
// block-attention.test.ts, sessions in decoding.test.ts and routing in routing-*.test.ts.
describeOnCpuBackends('sparse-attention.SparseAttention', (backend) => {
  for (const [pattern, causal] of [
    [{ type: 'full' }, false],
    [{ type: 'causal' }, true],
  ] as const) {
    it(`with pattern ${pattern.type} equals core.MultiHeadAttention given the same weights`, async () => {
      const sparse = attentionModel(
        attentionGraph({ numHeads: 2, keyDim: 4, blockSize: 4, pattern }, { time: 'time', d: D }),
      );
      const dense = createModel(createRuntime(), mhaGraph(causal), { seed: 1 });
      copyWeights(sparse, 'attn', dense, 'mha');
      const x = seededNormal([2, 11, D], { seed: 3 });
      await expectNoLeaks(async () => {
        const [a, b] = [await sparse.predict(x), await dense.predict(x)];
        await expectClose(a, b, { tolerance: toleranceFor(backend) });
        tf.dispose([a, b]);
      });
      x.dispose();
      sparse.dispose();
      dense.dispose();
    });
  }

  it('leaks nothing of later positions into earlier outputs (causal window, alibi, relative bias)', async () => {
    const model = attentionModel(
      attentionGraph(
        {
          numHeads: 2,
          keyDim: 4,
          blockSize: 4,
          pattern: CAUSAL_WINDOW,
          scoreMods: [
            { type: 'alibi' },
            { type: 'relative-bias', buckets: 6, maxDistance: 16, bidirectional: false },
          ],
        },
        { time: 'time', d: D },
      ),
    );
    const x = seededNormal([1, 14, D], { seed: 4 });
    const t = 6;
    const changed = tf.tidy(() =>
      tf.concat(
        [tf.slice(x, [0, 0, 0], [1, t + 1, D]), tf.mul(tf.slice(x, [0, t + 1, 0], [1, 14 - t - 1, D]), -3)],
        1,
      ),
    );
    const [a, b] = [await model.predict(x), await model.predict(changed)];
    const [headA, headB] = [tf.slice(a, [0, 0, 0], [1, t + 1, D]), tf.slice(b, [0, 0, 0], [1, t + 1, D])];
    await expectClose(headB, headA, { tolerance: toleranceFor(backend) });
    const tail = tf.tidy(() =>
      tf.max(tf.abs(tf.sub(tf.slice(a, [0, t + 1, 0]), tf.slice(b, [0, t + 1, 0])))),
    );
    expect((await tail.data())[0]).toBeGreaterThan(1e-2);
    tf.dispose([x, changed, a, b, headA, headB, tail]);
    model.dispose();
  });

  it('computes only kept tiles: FLOPs well below dense attention, gathered bytes linear in n', async () => {
    const options: SparseAttentionOptions = { numHeads: 2, keyDim: 4, blockSize: 8, pattern: CAUSAL_WINDOW };
    const model = attentionModel(attentionGraph(options, { time: 'time', d: D }));
    const dense = createModel(createRuntime(), mhaGraph(true), { seed: 1 });
    const reports = [];
    for (const n of [32, 64]) {
      const x = seededNormal([1, n, D], { seed: 5 });
      const { outputs, report } = await model.run(x);
      reports.push(report!.nodes.find((node) => node.name === 'attn')!);
      if (n === 64) {
        const mha = await dense.run(x);
        const mhaFlops = mha.report!.nodes.find((node) => node.name === 'mha')!.flops;
        expect(reports[1]!.flops).toBeLessThan(0.45 * mhaFlops);
        tf.dispose(mha.outputs.y!);
      }
      tf.dispose([x, outputs.y!]);
    }
    const [short, long] = reports as [(typeof reports)[0], (typeof reports)[0]];
    // Each query block keeps its own block and the one before, both in part: 15 of 64 tiles at n =
    // 64, computed as 8 x 2 (one group, the first query block padded with a sentinel); at n = 32
    // padding 1 of 7 tiles is too much, so the first query block is a group of its own.
    expect(long.stats).toMatchObject({
      keptTiles: 15,
      denseTiles: 64,
      partialTiles: 15,
      computedTiles: 16,
      tileGroups: 1,
    });
    expect(short.stats).toMatchObject({ keptTiles: 7, denseTiles: 16, computedTiles: 7, tileGroups: 2 });
    // Computed tiles x heads x block x (dk + dv) floats: the gathers grow with n.
    expect(long.bytes).toBe(16 * 2 * 8 * (4 + 4) * 4);
    expect(short.bytes).toBe(7 * 2 * 8 * (4 + 4) * 4);
    model.dispose();
    dense.dispose();
  });

  it('trains with padding and a relative bias, leaking no tensor after a run or a step', async () => {
    const model = attentionModel(
      attentionGraph(
        {
          numHeads: 4,
          numKvHeads: 2,
          keyDim: 4,
          blockSize: 4,
          pattern: CAUSAL_WINDOW,
          scoreMods: [{ type: 'relative-bias', buckets: 6, maxDistance: 16, bidirectional: false }],
        },
        { time: 'time', d: D },
        { padding: true },
      ),
    );
    const x = seededNormal([3, 10, D], { seed: 6 });
    const padding = tf.tensor2d(
      Array.from({ length: 30 }, (_, i) => (i >= 26 ? 0 : 1)),
      [3, 10],
    );
    const y = tf.tidy(() => tf.tanh(tf.mul(x, 2)));
    await expectNoLeaks(async () => {
      const out = await model.predict({ x, padding });
      // The padded positions output zeros.
      const last = tf.slice(out, [2, 6, 0], [1, 4, D]);
      expect(Array.from(await last.data()).every((v) => v === 0)).toBe(true);
      tf.dispose([out, last]);
    }, 'a run');
    const bias = model.params.get('attn/relativeBias')!.clone();
    const trainer = new Trainer(model, { loss: 'meanSquaredError', optimizer: tf.train.adam(0.02) });
    // The first step creates the optimizer's slots; a later one must allocate nothing that stays.
    const first = await trainer.step({ x, padding }, y, 1);
    const second = await expectNoLeaks(() => trainer.step({ x, padding }, y, 2), 'a training step');
    expect(second.loss).toBeLessThan(first.loss);
    const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(bias, model.params.get('attn/relativeBias')!))));
    expect((await moved.data())[0]).toBeGreaterThan(0);
    trainer.dispose();
    tf.dispose([x, padding, y, bias, moved]);
    model.dispose();
  });

  it('routing heads attend within their clusters and train their centroids', async () => {
    const routing = { heads: 2, clusters: 2, window: 4, causal: false, decay: 0.5, commitment: 0.1 };
    const model = attentionModel(attentionGraph({ numHeads: 2, keyDim: 4, routing }, { time: 10, d: D }));
    const x = seededNormal([2, 10, D], { seed: 7 });
    const p = (name: string) => model.params.get(`attn/${name}`)!;
    await expectNoLeaks(async () => {
      // The Routing Transformer from its parts: shared unit query-keys, a plan, attention, the output projection.
      const qk = tf.tidy(() => {
        const q = tf.add(
          tf.matMul(tf.reshape(x, [20, D]), tf.reshape(p('queryKernel'), [D, 8])),
          tf.reshape(p('queryBias'), [8]),
        );
        return tf.reshape(
          unitNormalize(tf.transpose(tf.reshape(q, [2, 10, 2, 4]), [0, 2, 1, 3])),
          [4, 10, 4],
        );
      });
      const v = tf.tidy(() => {
        const w = tf.reshape(p('routingValueKernel'), [D, 8]);
        const values = tf.add(tf.matMul(tf.reshape(x, [20, D]), w), tf.reshape(p('routingValueBias'), [8]));
        return tf.reshape(tf.transpose(tf.reshape(values, [2, 10, 2, 4]), [0, 2, 1, 3]), [4, 10, 4]);
      });
      const centroids = tf.tidy(() => unitNormalize(model.state.get('attn/centroids')!));
      const shape = { batch: 2, heads: 2, time: 10, dim: 4 };
      const plan = planRouting(
        (await qk.data()) as Float32Array,
        (await centroids.data()) as Float32Array,
        shape,
        routing,
      );
      const expected = tf.tidy(() => {
        const attended = tf.reshape(
          tf.transpose(tf.reshape(routingAttention(qk, v, plan), [2, 2, 10, 4]), [0, 2, 1, 3]),
          [20, 8],
        );
        return tf.reshape(
          tf.add(tf.matMul(attended, tf.reshape(p('outputKernel'), [8, D])), p('outputBias')),
          [2, 10, D],
        );
      });
      const got = await model.predict(x);
      await expectClose(got, expected, { tolerance: toleranceFor(backend) });
      tf.dispose([qk, v, centroids, expected, got]);
    });
    const before = model.state.get('attn/centroids')!.clone();
    const { losses, outputs } = await model.run(x, { training: true });
    expect(losses.map((l) => l.name)).toEqual(['commitment']);
    const trainer = new Trainer(model, { loss: 'meanSquaredError', optimizer: tf.train.sgd(0.1) });
    await trainer.step(x, x, 1);
    // A step (commitment loss and centroid update included) leaves no tensor behind.
    await expectNoLeaks(() => trainer.step(x, x, 2));
    const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(before, model.state.get('attn/centroids')!))));
    expect((await moved.data())[0]).toBeGreaterThan(0);
    trainer.dispose();
    tf.dispose([x, before, moved, outputs.y!, ...losses.map((l) => l.value)]);
    model.dispose();
  });

  it('saves and loads with its pattern and score modifiers intact', async () => {
    const pattern: Pattern = {
      type: 'or',
      of: [
        { type: 'bigbird', windowBlocks: 3, globalBlocks: 1, randomBlocks: 1, seed: 4 },
        { type: 'prefix-lm' },
      ],
    };
    const scoreMods = [{ type: 'softcap', cap: 20 }] as const;
    const graph = attentionGraph(
      { numHeads: 2, keyDim: 4, blockSize: 4, pattern, scoreMods: [...scoreMods] },
      { time: 'time', d: D },
      { prefix: true },
    );
    const model = attentionModel(graph);
    let saved: tf.io.ModelArtifacts | undefined;
    await saveModel(
      model,
      tf.io.withSaveHandler(async (artifacts) => {
        saved = artifacts;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const json = JSON.parse(JSON.stringify(saved!.modelTopology)) as Graph;
    const loaded = await loadModel(runtime, tf.io.fromMemory({ ...saved!, modelTopology: json }));
    const node = loaded.graph.nodes.find((n) => n.name === 'attn')!;
    expect(node.attrs.pattern).toEqual(pattern);
    expect(node.attrs.scoreMods).toEqual(scoreMods);
    const x = seededNormal([2, 9, D], { seed: 8 });
    const prefix = tf.tensor1d([3, 5], 'int32');
    const [a, b] = [await model.predict({ x, prefix }), await loaded.predict({ x, prefix })];
    await expectClose(b, a, { tolerance: 0 });
    tf.dispose([x, prefix, a, b]);
    loaded.dispose();
    model.dispose();
  });
});

it('refuses bad layers with errors naming the node, the field and the fix', () => {
  const build = (options: Partial<SparseAttentionOptions>, wire: Parameters<typeof attentionGraph>[2] = {}) =>
    thrown(() => attentionGraph({ numHeads: 4, keyDim: 4, ...options }, { time: 7, d: D }, wire));
  const badPattern = build({ pattern: { type: 'window', before: 2, after: -1 } as Pattern });
  expect(isDynnError(badPattern, 'INVALID_ATTR')).toBe(true);
  expect(badPattern.message).toMatch(/pattern\.after must be an integer >= 0, got -1/);
  const badMod = build({ scoreMods: [{ type: 'softcap', cap: 0 }] });
  expect(isDynnError(badMod, 'INVALID_ATTR')).toBe(true);
  expect(badMod.message).toMatch(/scoreMods\[0\]\.cap must be a number > 0/);
  expect(build({ numKvHeads: 3 }).message).toMatch(
    /'attn'.*numKvHeads \(3\) must divide the 4 pattern heads/,
  );
  expect(build({ pattern: { type: 'document' } }).message).toMatch(
    /'attn'.*'document' part.*add 'documents' to attribute 'extraInputs'/,
  );
  expect(build({}, { documents: true }).message).toMatch(/input 'documents' is wired but nothing reads it/);
  expect(
    build({ routing: { heads: 5, clusters: 2, window: 2, causal: true, decay: 0.9, commitment: 0 } }).message,
  ).toMatch(/'attn'.*heads must be an integer from 1 to the layer's 4 heads/);
  const b = new GraphBuilder(createRuntime({ plugins: [sparseAttention()] }));
  const x = b.input('x', 'float32', ['batch', 7, D]);
  const mask = b.input('mask', 'float32', ['batch', 6]);
  const wrongShape = thrown(() =>
    b.add(
      'sparse-attention.SparseAttention',
      [x, mask],
      { numHeads: 2, keyDim: 4, extraInputs: ['padding'] },
      { name: 'attn' },
    ),
  );
  expect(wrongShape.message).toMatch(/'attn'.*input 'padding' must be \[batch, 7\]/);
  const b2 = new GraphBuilder(createRuntime({ plugins: [sparseAttention()] }));
  const flat = b2.input('x', 'float32', ['batch', D]);
  expect(
    thrown(() => b2.add('sparse-attention.SparseAttention', flat, { numHeads: 2, keyDim: 4 })).message,
  ).toMatch(/needs x \[batch, time, features\]/);
});
