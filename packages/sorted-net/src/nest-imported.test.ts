import {
  channelGroups,
  createModel,
  createRuntime,
  GraphBuilder,
  importLayersModel,
  type Model,
  runPass,
} from '@dynn/core';
import { describeEachBackend, expectClose, guardLeaks, mobileNetV2Like, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { describeNesting } from './describe-nesting.js';
import { channelImportance } from './importance.js';
import { nestModel } from './nest-model.js';
import { type SubNetwork, subNetworkOptions } from './options.js';
import { runtime } from './test-models.js';

let artifacts: tf.io.ModelArtifacts | undefined;

/** The Keras model imported on the active backend (built once: its artifacts are plain data). */
async function imported(): Promise<Model> {
  artifacts ??= await mobileNetV2Like({ size: 16, classes: 5, seed: 3 });
  return importLayersModel(runtime, artifacts);
}

/** `sub` of `nested`, run as it is and as the exported plain model: both outputs, and the plain model. */
async function runBoth(nested: Model, x: tf.Tensor, sub: SubNetwork) {
  const exported = runPass(runtime, 'sorted-net.export', nested, sub);
  // A runtime without the plugin loads the exported graph: it holds core ops only.
  const plain = createModel(createRuntime(), exported.graph, { weights: exported.weights });
  const { outputs: a } = await nested.run(
    { [nested.graph.inputs[0]!.name]: x },
    { options: subNetworkOptions(sub) },
  );
  const { outputs: b } = await plain.run({ [plain.graph.inputs[0]!.name]: x });
  return { nestedOut: Object.values(a)[0]!, plainOut: Object.values(b)[0]!, plain };
}

const paramCount = (model: Model) => [...model.params.values()].reduce((n, p) => n + p.size, 0);

/** A post-norm transformer block: self-attention (4 heads of 4) and a 32-unit FFN, both residual. */
function transformerGraph() {
  const b = new GraphBuilder(runtime);
  const x = b.input('tokens', 'float32', ['batch', 6, 16]);
  const attn = b.add('core.MultiHeadAttention', [x, x], { numHeads: 4, keyDim: 4 }, { name: 'attn' });
  let h = b.add('core.Add', [x, attn], {}, { name: 'attnAdd' });
  h = b.add('core.LayerNorm', h, {}, { name: 'ln1' });
  let f = b.add('core.Dense', h, { units: 32, activation: 'relu' }, { name: 'ffn1' });
  f = b.add('core.Dense', f, { units: 16 }, { name: 'ffn2' });
  h = b.add('core.Add', [h, f], {}, { name: 'ffnAdd' });
  h = b.add('core.LayerNorm', h, {}, { name: 'ln2' });
  return b.build({ logits: b.add('core.Dense', h, { units: 5 }, { name: 'head' }) });
}

describeEachBackend('sorted-net on imported and attention models', () => {
  guardLeaks();

  it('nests an imported MobileNetV2-like Keras model: residual adds move together, every sub-network exports', async () => {
    const model = await imported();
    const nested = await nestModel(model, { multiple: 2 });
    const nesting = describeNesting(nested.graph);
    // The residual stream of each stage, each expansion and the head conv are knobs.
    expect(nesting.knobs.map((k) => k.size).sort((a, b) => a - b)).toEqual([8, 12, 24, 32, 36]);
    expect(nesting.stages.map((s) => s.blocks.length)).toEqual([1, 1]);
    const x = seededNormal([2, 16, 16, 3], { seed: 5 });
    const { outputs: original } = await model.run({ image: x });
    const { outputs: full } = await nested.run({ image: x });
    await expectClose(full.logits!, original.logits!);
    for (const sub of [
      { width: 0.5 },
      { width: 0.5, depth: 0 },
      { width: { [nesting.knobs[0]!.name]: 0.25 } },
    ]) {
      const { nestedOut, plainOut, plain } = await runBoth(nested, x, sub);
      await expectClose(plainOut, nestedOut);
      expect(paramCount(plain)).toBeLessThan(paramCount(nested));
      tf.dispose([nestedOut, plainOut]);
      plain.dispose();
    }
    tf.dispose([...Object.values(original), ...Object.values(full), x]);
    model.dispose();
    nested.dispose();
  });

  it('sorts each group by importance: in the nested model every prefix holds the most important channels', async () => {
    const model = await imported();
    const nested = await nestModel(model, { multiple: 1 });
    // The full sub-network as a plain graph has the nested model's channel order.
    const full = runPass(runtime, 'sorted-net.export', nested, { foldBatchNorm: false });
    const changeable = channelGroups(runtime, full.graph)
      .groups.filter((g) => g.fixed.length === 0)
      .map((g) => g.id);
    const scores = await channelImportance(runtime, full, 'l1', changeable);
    expect(scores.size).toBe(5);
    for (const [, score] of scores) {
      if (score.length < 2) continue;
      for (let c = 1; c < score.length; c++) expect(score[c]!).toBeLessThanOrEqual(score[c - 1]! + 1e-6);
    }
    tf.dispose([...full.weights.values()]);
    model.dispose();
    nested.dispose();
  });

  it('nests attention heads and the FFN of a transformer block: fewer heads compute less and export', async () => {
    const model = createModel(runtime, transformerGraph(), { seed: 2 });
    const nested = await nestModel(model, { sort: 'none' });
    const knobs = describeNesting(nested.graph).knobs;
    // Heads, each head's key and value sizes, and the FFN's hidden units; the residual stream
    // holds the graph input's channels, which stay.
    expect(knobs.map((k) => [k.name, k.size])).toEqual([
      ['attn#heads', 4],
      ['attn#keyDim', 4],
      ['attn#valueDim', 4],
      ['ffn1#out', 32],
    ]);
    const x = seededNormal([2, 6, 16], { seed: 6 });
    const costs: number[] = [];
    for (const sub of [{}, { width: 0.5 }, { width: 0.25, depth: 1 }]) {
      const { outputs, report } = await nested.run(
        { tokens: x },
        { report: true, options: subNetworkOptions(sub) },
      );
      costs.push(report!.flops);
      tf.dispose(Object.values(outputs));
      const { nestedOut, plainOut, plain } = await runBoth(nested, x, sub);
      await expectClose(plainOut, nestedOut);
      tf.dispose([nestedOut, plainOut]);
      plain.dispose();
    }
    expect(costs[1]!).toBeLessThan(costs[0]!);
    expect(costs[2]!).toBeLessThan(costs[1]!);
    x.dispose();
    model.dispose();
    nested.dispose();
  });
});
