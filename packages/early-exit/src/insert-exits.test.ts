import {
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  importLayersModel,
  isDynnError,
  loadModel,
  runPass,
  saveModel,
} from '@dynn/core';
import { describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect, it } from 'vitest';
import { addExits, staticModel } from './add-exits.js';
import { describeExits, exitParamFilter } from './exits.js';
import { insertExits } from './insert-exits.js';
import { exitRunOptions } from './options.js';
import { chainGraph, graphWithExits, runtime } from './test-models.js';

/** An MLP: x [batch, 6] -> d1, d2, d3 (8 units, relu) -> out (4 logits). */
function mlpGraph(): Graph {
  const b = new GraphBuilder(runtime);
  let h = b.input('x', 'float32', ['batch', 6]);
  for (const name of ['d1', 'd2', 'd3'])
    h = b.add('core.Dense', h, { units: 8, activation: 'relu' }, { name });
  return b.build({ logits: b.add('core.Dense', h, { units: 4 }, { name: 'out' }) });
}

/** Asserts two tensors hold exactly the same numbers. */
async function expectIdentical(actual: tf.Tensor, expected: tf.Tensor): Promise<void> {
  expect(actual.shape).toEqual(expected.shape);
  expect(Array.from(await actual.data())).toEqual(Array.from(await expected.data()));
}

/** Applies a tfjs-layers layer to a symbolic tensor (or a list, for merge layers). */
function call(
  layer: { apply(x: tfl.SymbolicTensor | tfl.SymbolicTensor[]): unknown },
  ...x: tfl.SymbolicTensor[]
) {
  return layer.apply(x.length === 1 ? x[0]! : x) as tfl.SymbolicTensor;
}

/** A small residual CNN in tfjs-layers: two residual blocks, global pooling, a softmax head. */
function residualCnn(): tfl.LayersModel {
  const image = tfl.input({ shape: [6, 6, 2], name: 'image' });
  const c1 = call(
    tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'c1' }),
    image,
  );
  const c2 = call(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'c2' }), c1);
  const res1 = call(tfl.layers.add({ name: 'res1' }), c1, c2);
  const act = call(tfl.layers.activation({ activation: 'relu', name: 'act' }), res1);
  const c3 = call(
    tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'c3' }),
    act,
  );
  const res2 = call(tfl.layers.add({ name: 'res2' }), act, c3);
  const pool = call(tfl.layers.globalAveragePooling2d({ name: 'pool' }), res2);
  const probabilities = call(
    tfl.layers.dense({ units: 3, activation: 'softmax', name: 'probabilities' }),
    pool,
  );
  return tfl.model({ inputs: image, outputs: probabilities });
}

async function artifactsOf(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return saved!;
}

/** The node whose output an exit reads. */
function attachedTo(graph: Graph, exitNode: string): string {
  const features = graph.nodes.find((n) => n.name === exitNode)!.inputs[0]!;
  return graph.nodes.find((n) => n.outputs.includes(features))!.name;
}

describeEachBackend('early-exit.insert-exits', () => {
  guardLeaks();

  it('inserts chained exits into a Sequential MLP; exits off, the outputs are bit-identical', async () => {
    const graph = mlpGraph();
    const before = JSON.stringify(graph);
    const inserted = runPass(runtime, 'early-exit.insert-exits', graph, { every: 1 });
    const withExits = inserted.graph;
    expect(JSON.stringify(graph)).toBe(before);
    // The pass makes no weight: the new heads are initialised when a model is made.
    expect(inserted.weights.size).toBe(0);
    expect(withExits.opsets).toEqual({ core: 2, 'early-exit': 2 });
    expect(withExits.outputs.map((o) => o.name)).toEqual(['logits', 'exit0', 'exit1', 'exit2']);
    expect(withExits.outputs[1]).toEqual({ name: 'exit0', dtype: 'float32', shape: ['batch', 4] });
    const exits = describeExits(withExits);
    expect(exits.map((e) => attachedTo(withExits, e.node))).toEqual(['d1', 'd2', 'd3']);
    // Each exit after the first reads its features and the previous exit's state, nothing more.
    expect(withExits.nodes.find((n) => n.name === 'exit2')!.inputs).toEqual(['d3/features', 'exit1/state']);
    expect(exits.map((e) => e.attrs.exitOutputs)).toEqual([
      ['exit0', 'exit1', 'exit2'],
      ['exit1', 'exit2'],
      ['exit2'],
    ]);
    expect(describeExits(graphWithExits(graph, { every: 2 })).map((e) => e.node)).toEqual(['exit0']);

    // Removing the exits gives back the graph.
    expect(runPass(runtime, 'early-exit.remove-exits', withExits, {}).graph).toEqual(graph);
    const original = createModel(runtime, graph, { seed: 1 });
    const model = addExits(original, { every: 1 });
    expect(model.graph).toEqual(withExits);
    const x = seededUniform([5, 6], { seed: 2 });
    const expected = await original.predict(x);
    for (const options of [{}, exitRunOptions({ criterion: 'none' })]) {
      const { outputs } = await model.run(x, { options });
      await expectIdentical(outputs.logits!, expected);
      tf.dispose(Object.values(outputs));
    }
    // The static network of the multi-exit model is the original, bit for bit.
    const backbone = staticModel(model);
    const again = await backbone.predict(x);
    await expectIdentical(again, expected);
    tf.dispose([x, expected, again]);
    backbone.dispose();
    original.dispose();
    model.dispose();
  });

  it("loads and runs an op-set 1 model file, whose exits carried the earlier exits' outputs", async () => {
    const model = createModel(runtime, graphWithExits(mlpGraph(), { every: 1, halting: true }), { seed: 7 });
    let saved: tf.io.ModelArtifacts | undefined;
    await saveModel(
      model,
      tf.io.withSaveHandler(async (artifacts) => {
        saved = artifacts;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    // The graph as op-set 1 wrote it: every exit re-read the earlier exits' logits and halts.
    const graph = structuredClone(saved!.modelTopology) as Graph;
    graph.opsets['early-exit'] = 1;
    const exits = describeExits(graph);
    for (const node of graph.nodes.filter((n) => n.op === 'early-exit.Exit')) {
      const earlier = exits.filter((e) => e.index < (node.attrs.index as number));
      const carried = [...earlier.map((e) => e.logits), ...earlier.map((e) => e.halt!)];
      node.attrs.carried = carried;
      node.inputs.push(...carried);
    }
    expect(graph.nodes.find((n) => n.name === 'exit2')!.inputs).toEqual([
      'd3/features',
      'exit1/state',
      'exit0',
      'exit1',
      'halt0',
      'halt1',
    ]);
    const old = await loadModel(runtime, tf.io.fromMemory({ ...saved!, modelTopology: graph }));
    const x = seededUniform([6, 6], { seed: 8 });
    const options = exitRunOptions({ criterion: 'maxProb', thresholds: 0.3 });
    const [a, b] = [await model.run(x, { options }), await old.run(x, { options })];
    expect(new Set(a.report!.servedBy.logits).size, 'rows leave at several exits').toBeGreaterThan(1);
    expect(b.report!.servedBy).toEqual(a.report!.servedBy);
    for (const name of Object.keys(a.outputs)) await expectIdentical(b.outputs[name]!, a.outputs[name]!);
    tf.dispose([x, ...Object.values(a.outputs), ...Object.values(b.outputs)]);
    old.dispose();
    model.dispose();
  });

  it('inserts exits into an imported residual Keras CNN after whole blocks', async () => {
    const keras = residualCnn();
    const original = await importLayersModel(runtime, await artifactsOf(keras));
    keras.dispose();
    const withExits = graphWithExits(original.graph, { every: 1, head: 'conv', convFilters: 2 });
    // Never inside a residual block: after c1 (the first block's input), after the first block's
    // activation and after the second block's merge (conv heads need an image)...
    const exits = describeExits(withExits);
    expect(exits.map((e) => attachedTo(withExits, e.node))).toEqual(['c1', 'act', 'res2']);
    expect(exits.map((e) => e.attrs.outputActivation)).toEqual(['softmax', 'softmax', 'softmax']);
    // ... or, for linear heads, after the pooled second block.
    const linear = graphWithExits(original.graph, { every: 1 });
    expect(describeExits(linear).map((e) => attachedTo(linear, e.node))).toEqual(['c1', 'act', 'pool']);

    const model = addExits(original, { every: 1, head: 'conv', convFilters: 2 });
    expect(model.runtime).toBe(original.runtime);
    const x = seededUniform([4, 6, 6, 2], { seed: 5 });
    const expected = await original.predict(x);
    const { outputs } = await model.run(x);
    await expectIdentical(outputs.probabilities!, expected);
    tf.dispose(Object.values(outputs));

    // Every row leaves at the first exit: the softmax output holds probabilities of its logits.
    const early = await model.run(x, { options: exitRunOptions({ criterion: 'maxProb', thresholds: 0 }) });
    const probabilities = tf.softmax(early.outputs.exit0!);
    await expectClose(early.outputs.probabilities!, probabilities);
    expect(early.report!.servedBy.probabilities).toEqual(['exit0', 'exit0', 'exit0', 'exit0']);
    tf.dispose([x, expected, probabilities, ...Object.values(early.outputs)]);
    original.dispose();
    model.dispose();
  });

  it('lets every exit share one output head', async () => {
    const withExits = graphWithExits(mlpGraph(), {
      at: ['d1', 'd3'],
      head: 'shared',
      sharedHead: 'lm',
      halting: true,
    });
    expect(withExits.params.map((p) => p.name).filter((name) => name.startsWith('lm/'))).toEqual([
      'lm/kernel',
      'lm/bias',
    ]);
    expect(withExits.params.some((p) => /^exit\d+\/(kernel|bias)$/.test(p.name))).toBe(false);
    expect(withExits.outputs.map((o) => o.name)).toEqual(['logits', 'exit0', 'exit1', 'halt0', 'halt1']);
    const model = createModel(runtime, withExits, { seed: 4 });
    expect([...model.params.keys()].filter((name) => name.startsWith('lm/'))).toEqual([
      'lm/kernel',
      'lm/bias',
    ]);
    // Only the exits declare the shared head: they train it, and removing them drops it.
    expect([...model.params.keys()].filter(exitParamFilter(model))).toEqual([
      'lm/kernel',
      'lm/bias',
      'exit0/haltKernel',
      'exit0/haltBias',
      'exit1/haltKernel',
      'exit1/haltBias',
    ]);
    expect(runPass(runtime, 'early-exit.remove-exits', withExits, {}).graph).toEqual(mlpGraph());
    const x = seededUniform([3, 6], { seed: 6 });
    const { outputs } = await model.run(x, { outputs: ['exit0', 'exit1'] });
    // Both exits apply the one shared kernel and bias to their own features.
    const [exit0, exit1] = tf.tidy(() => {
      const p = (name: string) => model.params.get(name)!;
      const layer = (h: tf.Tensor, name: string) =>
        tf.relu(tf.add(tf.matMul(h as tf.Tensor2D, p(`${name}/kernel`) as tf.Tensor2D), p(`${name}/bias`)));
      const head = (h: tf.Tensor) =>
        tf.add(tf.matMul(h as tf.Tensor2D, p('lm/kernel') as tf.Tensor2D), p('lm/bias'));
      const d1 = layer(x, 'd1');
      return [head(d1), head(layer(layer(d1, 'd2'), 'd3'))];
    });
    await expectClose(outputs.exit0!, exit0!);
    await expectClose(outputs.exit1!, exit1!);
    tf.dispose([x, exit0!, exit1!, ...Object.values(outputs)]);
    model.dispose();
  });

  it('rejects bad options with a typed error', () => {
    const graph = chainGraph();
    const bad: [Record<string, unknown>, RegExp][] = [
      [{}, /exactly one of 'at'/],
      [{ at: ['b1'], every: 1 }, /exactly one of 'at'/],
      [{ every: 0 }, /'every' must be an integer >= 1/],
      [{ at: ['nope'] }, /no node named 'nope'/],
      [{ at: ['b4'] }, /node 'b4' is not before output 'logits'/],
      [{ at: ['b1'], classes: 7 }, /'classes' is 7 but output 'logits' has 3/],
      [{ at: ['b1'], output: 'probs' }, /no graph output 'probs'/],
      [{ at: ['b1'], head: 'tree' }, /'head' is "tree"/],
      [{ at: ['b1'], pool: 'max' }, /'pool' is "max"; expected one of mean, flatten/],
      [
        { at: ['b1'], head: 'conv' },
        /node 'b1' outputs float32\[batch, 3\]; head 'conv' answering for 'logits' reads a float32 \[batch, h, w, c\]/,
      ],
      [{ at: ['b1'], sharedNorm: 'norm' }, /'sharedNorm' normalises the features of shared heads/],
    ];
    for (const [options, message] of bad) {
      let error: unknown;
      try {
        runPass(runtime, 'early-exit.insert-exits', graph, options);
      } catch (e) {
        error = e;
      }
      expect(isDynnError(error), `${JSON.stringify(options)}: ${String(error)}`).toBe(true);
      expect((error as Error).message).toMatch(message);
    }
    expect(() => graphWithExits(graphWithExits(graph, { at: ['b1'] }), { at: ['b2'] })).toThrow(
      /already has exits/,
    );
  });

  it('needs a runtime with the early-exit plugin, and says how to make one', () => {
    const plain = createRuntime();
    const model = createModel(plain, mlpGraph(), { seed: 3 });
    const fix = /createRuntime\(\{ plugins: \[earlyExit\(\)\] \}\)/;
    for (const attempt of [
      () => addExits(model, { every: 1 }),
      () => staticModel(model),
      () => insertExits(model.graph, { every: 1 }, { runtime: plain, weights: new Map() }),
    ]) {
      let error: unknown;
      try {
        attempt();
      } catch (e) {
        error = e;
      }
      expect(isDynnError(error, 'UNKNOWN_OP'), String(error)).toBe(true);
      expect((error as Error).message).toMatch(fix);
    }
    model.dispose();
  });
});
