import { describeEachBackend, expectClose, guardLeaks, seededNormal, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { createModel, type Model } from './model.js';
import { runPass } from './run-pass.js';
import { createRuntime } from './runtime.js';

const runtime = createRuntime();

/** Conv-BN-relu, depthwise-BN (then a residual add), dense-BN: every form the pass folds. */
function graph() {
  const b = new GraphBuilder(runtime);
  const x = b.input('image', 'float32', ['batch', 6, 6, 2]);
  let h = b.add(
    'core.Conv2D',
    x,
    { filters: 4, kernelSize: [3, 3], padding: 'same', useBias: false },
    { name: 'conv' },
  );
  h = b.add('core.BatchNorm', h, {}, { name: 'bn1' });
  h = b.add('core.Activation', h, { fn: 'relu6' }, { name: 'relu' });
  let r = b.add('core.DepthwiseConv2D', h, { kernelSize: [3, 3], padding: 'same' }, { name: 'dw' });
  r = b.add('core.BatchNorm', r, {}, { name: 'bn2' });
  h = b.add('core.Add', [h, r], {}, { name: 'add' });
  h = b.add('core.GlobalAvgPool2D', h, {}, { name: 'pool' });
  h = b.add('core.Dense', h, { units: 5 }, { name: 'dense' });
  h = b.add('core.BatchNorm', h, {}, { name: 'bn3' });
  return b.build({ logits: h });
}

/** Random batch-norm scales, shifts and statistics, so that folding has something to fold. */
function randomizeBatchNorms(model: Model) {
  let seed = 1;
  for (const [name, v] of [...model.params, ...model.state]) {
    if (!/bn\d\//.test(name)) continue;
    const range = name.endsWith('movingVariance') ? { min: 0.5, max: 2 } : { min: -1, max: 1 };
    const value = seededUniform(v.shape, { seed: seed++, ...range });
    v.assign(value);
    value.dispose();
  }
}

describeEachBackend('core.fold-batch-norm', () => {
  guardLeaks();

  it('folds batch norms and the activation after them into the layers: same outputs, fewer nodes', async () => {
    const model = createModel(runtime, graph(), { seed: 3 });
    randomizeBatchNorms(model);
    const folded = runPass(runtime, 'core.fold-batch-norm', model, {});
    expect(folded.graph.nodes.map((n) => n.name)).toEqual(['conv', 'dw', 'add', 'pool', 'dense']);
    expect(folded.graph.nodes[0]!.attrs).toMatchObject({ useBias: true, activation: 'relu6' });
    const small = createModel(runtime, folded.graph, { weights: folded.weights });
    const x = seededNormal([3, 6, 6, 2], { seed: 4 });
    const { outputs: a } = await model.run({ image: x });
    const { outputs: b } = await small.run({ image: x });
    await expectClose(b.logits!, a.logits!, {
      tolerance: tf.getBackend() === 'webgl' || tf.getBackend() === 'webgpu' ? 1e-3 : 1e-4,
    });
    tf.dispose([x, ...Object.values(a), ...Object.values(b)]);
    model.dispose();
    small.dispose();
  });

  it('leaves a batch norm whose layer has another reader, or an activation of its own', () => {
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 3]);
    const d = b.add('core.Dense', x, { units: 3 }, { name: 'd' });
    const bn = b.add('core.BatchNorm', d, {}, { name: 'bn' });
    const e = b.add('core.Dense', x, { units: 3, activation: 'relu' }, { name: 'e' });
    const bn2 = b.add('core.BatchNorm', e, {}, { name: 'bn2' });
    const g = b.build({ y: b.add('core.Add', [bn, d, bn2], {}, { name: 'sum' }) });
    const folded = runPass(runtime, 'core.fold-batch-norm', g, {});
    expect(folded.graph.nodes.map((n) => n.op)).toEqual(g.nodes.map((n) => n.op));
  });
});
