import {
  createModel,
  type Graph,
  GraphBuilder,
  importLayersModel,
  isDynnError,
  type Model,
  runPass,
} from '@dynn/core';
import {
  describeEachBackend,
  expectClose,
  expectNoLeaks,
  seededNormal,
  seededUniform,
  toleranceFor,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect, it } from 'vitest';
import { findFeedForwards } from './feed-forward.js';
import { MOE_OP, type MoeAttrs } from './moe-op.js';
import { MOEFY_PASS, type MoefyOptions, moefyModel } from './moefy.js';
import { moeOptions } from './options.js';
import { runtime } from './test-models.js';

/**
 * A transformer-style block on sequences `[batch, 3, 8]`: a residual feed-forward block (`ffn1`
 * 8 -> 32 gelu, `ffn2` 32 -> 8) and a head.
 */
function blockGraph(): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 3, 8]);
  const h = b.add('core.Dense', x, { units: 32, activation: 'gelu' }, { name: 'ffn1' });
  const f = b.add('core.Dense', h, { units: 8 }, { name: 'ffn2' });
  const r = b.add('core.Add', [x, f], {}, { name: 'residual' });
  return b.build({ y: b.add('core.Dense', r, { units: 4 }, { name: 'head' }) });
}

/** `model` with random values in every bias too (a fresh Dense's bias is zero). */
function withRandomWeights(model: Model, seed: number): Model {
  let i = 0;
  for (const v of model.params.values()) {
    const values = seededUniform(v.shape, { seed: seed + i++, min: -0.6, max: 0.6 });
    v.assign(values);
    values.dispose();
  }
  return model;
}

/** Runs both models on `x` (every expert of the MoE model active) and compares the outputs. */
async function expectSameOutputs(dense: Model, moe: Model, x: tf.Tensor, experts: number, tolerance: number) {
  const input = dense.graph.inputs[0]!.name;
  const { outputs: a } = await dense.run({ [input]: x }, { report: false });
  const { outputs: b } = await moe.run(
    { [input]: x },
    { report: false, options: moeOptions({ k: experts }) },
  );
  for (const name of Object.keys(a)) await expectClose(b[name]!, a[name]!, { tolerance, label: name });
  tf.dispose([...Object.values(a), ...Object.values(b)]);
}

const moeNode = (model: Model) => model.graph.nodes.find((n) => n.op === MOE_OP)!;

/** The artifacts of a tfjs-layers model as `model.save` hands them to an IO handler (in memory). */
async function artifactsOf(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  return saved!;
}

/** A Keras model with seeded weights (biases included). */
async function kerasModel(layers: tfl.layers.Layer[], seed: number): Promise<tf.io.ModelArtifacts> {
  const model = tfl.sequential({ layers });
  const values = model.weights.map((w, i) =>
    seededUniform(w.shape as number[], { seed: seed + i, min: -0.6, max: 0.6 }),
  );
  model.setWeights(values);
  tf.dispose(values);
  return artifactsOf(model);
}

describeEachBackend('moe-router.moefy', (backend) => {
  const tolerance = toleranceFor(backend);

  it('with every expert active, the MoEfied block computes the dense one (cluster and contiguous)', async () => {
    const dense = withRandomWeights(createModel(runtime, blockGraph(), { seed: 1 }), 10);
    const x = seededNormal([2, 3, 8], { seed: 3 });
    await expectNoLeaks(async () => {
      for (const method of ['cluster', 'contiguous'] as const) {
        const moe = await moefyModel(dense, { node: 'ffn1', experts: 4, k: 2, method });
        const node = moeNode(moe);
        expect(node.name).toBe('ffn1');
        expect(moe.graph.nodes.map((n) => n.name)).toEqual(['ffn1', 'residual', 'head']);
        const attrs = node.attrs as unknown as MoeAttrs;
        expect(attrs.experts.length).toBe(4);
        expect(attrs.combine).toBe('unit');
        expect(attrs.outputBias).toBe(true);
        expect(attrs.experts.map((g) => g.nodes.map((n) => `${n.name}:${n.op}:${n.attrs.units}`))).toEqual(
          Array(4).fill(['up:core.Dense:8', 'down:core.Dense:8']),
        );
        // The dense block's weights, regrouped, plus the router's [8, 4].
        expect(moe.paramCount).toBe(dense.paramCount + 8 * 4);
        await expectSameOutputs(dense, moe, x, 4, tolerance);
        moe.dispose();
      }
    });
    x.dispose();
    dense.dispose();
  });

  it("groups similar neurons, and routes by the mean input weights of each expert's neurons", async () => {
    // 16 hidden neurons in 4 planted families (neuron j belongs to family j % 4), each neuron's
    // bias its own index / 100 so that the experts' biases name the neurons they hold.
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 6]);
    const h = b.add('core.Dense', x, { units: 16, activation: 'relu' }, { name: 'up' });
    const dense = createModel(
      runtime,
      b.build({ y: b.add('core.Dense', h, { units: 2 }, { name: 'down' }) }),
    );
    const centres = seededNormal([6, 4], { seed: 4, std: 5 });
    const kernel = tf.tidy(() =>
      tf.add(tf.tile(centres, [1, 4]), seededNormal([6, 16], { seed: 5, std: 0.1 })),
    );
    const ids = tf.mul(tf.range(0, 16), 0.01);
    dense.params.get('up/kernel')!.assign(kernel);
    dense.params.get('up/bias')!.assign(ids);
    tf.dispose([centres, kernel, ids]);
    const neurons = async (moe: Model, e: number) =>
      Array.from(await moe.params.get(`up/experts/${e}/up/bias`)!.data(), (v) => Math.round(v * 100));
    await expectNoLeaks(async () => {
      const clustered = await moefyModel(dense, { node: 'up', experts: 4, seed: 2 });
      const families = new Set<number>();
      for (let e = 0; e < 4; e++) {
        const held = await neurons(clustered, e);
        expect(held).toHaveLength(4);
        // One family per expert: the families are far apart, their members close.
        expect(new Set(held.map((j) => j % 4)).size).toBe(1);
        families.add(held[0]! % 4);
        // The router's column e is the mean of the expert's input weight vectors.
        const mean = tf.mean(clustered.params.get(`up/experts/${e}/up/kernel`)!, 1);
        const column = tf.tidy(() =>
          tf.squeeze(tf.slice(clustered.params.get('up/kernel')!, [0, e], [6, 1])),
        );
        await expectClose(column, mean, { tolerance });
        tf.dispose([mean, column]);
      }
      expect(families.size).toBe(4);
      clustered.dispose();
      const contiguous = await moefyModel(dense, { node: 'up', experts: 4, method: 'contiguous' });
      expect(await neurons(contiguous, 1)).toEqual([4, 5, 6, 7]);
      contiguous.dispose();
      // Groups given by hand take the place of the clustering.
      const given = await moefyModel(dense, {
        node: 'up',
        experts: 2,
        groups: [
          [15, 0, 3],
          [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
        ],
      });
      expect(await neurons(given, 0)).toEqual([15, 0, 3]);
      given.dispose();
    });
    dense.dispose();
  });

  it('takes a core.Activation between the Denses and a second Dense with an activation', async () => {
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 6]);
    const h = b.add('core.Dense', x, { units: 12 }, { name: 'h' });
    const a = b.add('core.Activation', h, { fn: 'leakyRelu', alpha: 0.1 }, { name: 'act' });
    const graph = b.build({
      p: b.add('core.Dense', a, { units: 3, activation: 'softmax' }, { name: 'out' }),
    });
    const dense = withRandomWeights(createModel(runtime, graph, { seed: 1 }), 20);
    const input = seededNormal([5, 6], { seed: 6 });
    await expectNoLeaks(async () => {
      const moe = await moefyModel(dense, { node: 'h', experts: 3, k: 1 });
      expect(moe.graph.nodes.map((n) => `${n.name}:${n.op}`)).toEqual([`h:${MOE_OP}`, 'out:core.Activation']);
      const expert = (moeNode(moe).attrs as unknown as MoeAttrs).experts[0]!;
      expect(expert.nodes.map((n) => n.op)).toEqual(['core.Dense', 'core.Activation', 'core.Dense']);
      await expectSameOutputs(dense, moe, input, 3, tolerance);
      moe.dispose();
    });
    input.dispose();
    dense.dispose();
  });

  it('MoEfies the feed-forward blocks of models imported from Keras', async () => {
    const sequential = await kerasModel(
      [
        tfl.layers.dense({ units: 16, activation: 'relu', inputShape: [8], name: 'fc1' }),
        tfl.layers.dense({ units: 4, name: 'fc2' }),
      ],
      30,
    );
    // A Keras Activation layer between the Denses is imported as a core.Activation node.
    const separate = await kerasModel(
      [
        tfl.layers.dense({ units: 24, inputShape: [8], name: 'expand' }),
        tfl.layers.activation({ activation: 'elu', name: 'expand_elu' }),
        tfl.layers.dense({ units: 5, activation: 'sigmoid', name: 'project' }),
      ],
      40,
    );
    const x = seededNormal([4, 8], { seed: 7 });
    await expectNoLeaks(async () => {
      for (const [artifacts, experts, activation] of [
        [sequential, 4, undefined],
        [separate, 6, 'expand_elu'],
      ] as const) {
        const dense = await importLayersModel(runtime, artifacts);
        const [block] = findFeedForwards(runtime, dense.graph);
        expect(block?.activation).toBe(activation);
        const moe = await moefyModel(dense, { node: block!.node, experts, k: 2 });
        expect(moe.graph.nodes.some((n) => n.name === block!.output && n.op === 'core.Dense')).toBe(false);
        await expectSameOutputs(dense, moe, x, experts, tolerance);
        moe.dispose();
        dense.dispose();
      }
    });
    x.dispose();
  });
});

it('finds the feed-forward blocks of a graph, and leaves out what is not one', () => {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  const h1 = b.add('core.Dense', x, { units: 8, activation: 'relu' }, { name: 'h1' });
  const h2 = b.add('core.Dense', h1, { units: 6, activation: 'tanh' }, { name: 'h2' });
  const out = b.add('core.Dense', h2, { units: 2 }, { name: 'out' });
  // A linear Dense (no neurons to split) and a Dense read twice.
  const lin = b.add('core.Dense', x, { units: 5 }, { name: 'lin' });
  const twice = b.add('core.Dense', lin, { units: 3, activation: 'relu' }, { name: 'twice' });
  const sum = b.add(
    'core.Add',
    [b.add('core.Dense', twice, { units: 3 }, { name: 'a' }), twice],
    {},
    { name: 'sum' },
  );
  const graph = b.build({ out, sum });
  expect(findFeedForwards(runtime, graph)).toEqual([
    { node: 'h1', output: 'h2', inputSize: 4, hidden: 8, outputSize: 6 },
    { node: 'h2', output: 'out', inputSize: 8, hidden: 6, outputSize: 2 },
  ]);
});

it('refuses what cannot be MoEfied, naming the node and the fix', async () => {
  const dense = createModel(runtime, blockGraph(), { seed: 1 });
  const refusal = (options: Partial<MoefyOptions>, source: Model | Graph = dense): string => {
    try {
      const result = runPass(runtime, MOEFY_PASS, source, { node: 'ffn1', experts: 4, ...options });
      tf.dispose([...result.weights.values()]);
    } catch (error) {
      expect(isDynnError(error)).toBe(true);
      return (error as Error).message;
    }
    throw new Error(`moefy accepted ${JSON.stringify(options)}`);
  };
  await expectNoLeaks(() => {
    expect(refusal({ node: 'nope' })).toMatch(/the graph has no node "nope"/);
    expect(refusal({ node: 'residual' })).toMatch(/'residual' is a core.Add; give the first core.Dense/);
    expect(refusal({ node: 'ffn2' })).toMatch(/'ffn2' feeds 'residual' \(core.Add\), not a core.Dense/);
    expect(refusal({ node: 'head' })).toMatch(/'y' \(the output of 'head'\) is a graph output/);
    expect(refusal({ experts: 5 })).toMatch(
      /32 neurons, which 5 experts cannot share evenly; give 'experts' a divisor of 32 \(2, 4, 8, 16, 32/,
    );
    expect(refusal({ experts: 1 })).toMatch(/'experts' must be an integer from 2 to 32 \(node 'ffn1'\)/);
    expect(refusal({ k: 5 })).toMatch(/'k' must be an integer from 1 to 4/);
    expect(refusal({ method: 'spectral' as 'cluster' })).toMatch(
      /'method' must be 'cluster' or 'contiguous'/,
    );
    expect(refusal({ expert: 4 } as Partial<MoefyOptions>)).toMatch(
      /'expert' is not an option; use node, experts/,
    );
    expect(refusal({ groups: [[0, 1], [2]] })).toMatch(
      /'groups' must be 4 non-empty lists of neuron indices \(0 to 31\)/,
    );
    expect(refusal({}, blockGraph())).toMatch(/the weight 'ffn1\/kernel' of node 'ffn1' was not given/);
  });
  // A hidden layer read by two nodes, a linear one, a softmax one.
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  const shared = b.add('core.Dense', x, { units: 8, activation: 'relu' }, { name: 'shared' });
  const linear = b.add('core.Dense', x, { units: 8 }, { name: 'linear' });
  const soft = b.add('core.Dense', x, { units: 8, activation: 'softmax' }, { name: 'soft' });
  const graph = b.build({
    a: b.add('core.Dense', shared, { units: 2 }, { name: 'a' }),
    b: b.add('core.Dense', shared, { units: 2 }, { name: 'b' }),
    c: b.add('core.Dense', linear, { units: 2 }, { name: 'c' }),
    d: b.add('core.Dense', soft, { units: 2 }, { name: 'd' }),
  });
  const model = createModel(runtime, graph);
  expect(refusal({ node: 'shared', experts: 2 }, model)).toMatch(
    /is read by 'a' \(core.Dense\), 'b' \(core.Dense\)/,
  );
  expect(refusal({ node: 'linear', experts: 2 }, model)).toMatch(
    /has no activation .* two linear Denses are one matrix/,
  );
  expect(refusal({ node: 'soft', experts: 2 }, model)).toMatch(/ends in a softmax, which mixes its neurons/);
  model.dispose();
  dense.dispose();
  // moefyModel needs a runtime with the MoE op.
  const { createRuntime } = await import('@dynn/core');
  const plain = createModel(createRuntime(), blockGraph());
  await expect(moefyModel(plain, { node: 'ffn1', experts: 4 })).rejects.toThrow(
    /needs a model whose runtime includes moeRouter\(\)/,
  );
  plain.dispose();
});

it("passes the router's choices to the layer, with k defaulting to what the router takes", async () => {
  const dense = createModel(runtime, blockGraph(), { seed: 1 });
  await expectNoLeaks(() => {
    const { graph, weights } = runPass<MoefyOptions>(runtime, MOEFY_PASS, dense, {
      node: 'ffn1',
      experts: 8,
      method: 'contiguous',
      router: 'switch',
      balanceLoss: 0.01,
      evalCapacityFactor: undefined,
    });
    const attrs = graph.nodes.find((n) => n.op === MOE_OP)!.attrs;
    expect(attrs).toMatchObject({ router: 'switch', k: 1, balanceLoss: 0.01, combine: 'unit' });
    expect('evalCapacityFactor' in attrs).toBe(false);
    expect(graph.opsets['moe-router']).toBe(1);
    tf.dispose([...weights.values()]);
    // The op's own checks still hold: the Switch router is top-1.
    expect(() =>
      runPass(runtime, MOEFY_PASS, dense, { node: 'ffn1', experts: 8, k: 2, router: 'switch' }),
    ).toThrow(/the 'switch' router is top-1: set k to 1/);
  });
  dense.dispose();
});
