import { type ComputeReport, createModel, GraphBuilder, runPass, Trainer } from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { describeNesting } from './describe-nesting.js';
import { nestModel } from './nest-model.js';
import { type SubNetwork, subNetworkOptions } from './options.js';
import { residualCnn, runtime } from './test-models.js';

const totalFlops = (report: ComputeReport | undefined) => report!.flops;

describeEachBackend('sorted-net.nest', () => {
  it('nests a residual CNN: the full sub-network equals the original, narrower and shallower ones compute less', async () => {
    const start = tf.memory().numTensors;
    const plain = createModel(runtime, residualCnn(), { seed: 1 });
    const x = seededNormal([3, 8, 8, 1], { seed: 2 });
    const nested = await nestModel(plain, { multiple: 2, kernelSizes: [1, 3] });
    const { outputs: original } = await plain.run({ image: x });
    const { outputs: full, report: fullReport } = await nested.run({ image: x }, { report: true });
    await expectClose(full.logits!, original.logits!);
    const flopsOf = async (sub: SubNetwork) => {
      const { outputs, report } = await nested.run(
        { image: x },
        { report: true, options: subNetworkOptions(sub) },
      );
      tf.dispose(Object.values(outputs));
      return report;
    };
    const half = await flopsOf({ width: 0.5 });
    const shallow = await flopsOf({ depth: 0 });
    const small = await flopsOf({ width: 0.25, depth: 1, kernel: 1 });
    expect(totalFlops(half)).toBeLessThan(0.4 * totalFlops(fullReport));
    expect(totalFlops(shallow)).toBeLessThan(0.4 * totalFlops(fullReport));
    expect(totalFlops(small)).toBeLessThan(totalFlops(half));
    tf.dispose([...Object.values(original), ...Object.values(full)]);
    // The model keeps the weights it narrowed, once per sub-network: a second run adds nothing.
    const kept = tf.memory().numTensors;
    expect(nested.derived.size).toBeGreaterThan(0);
    await flopsOf({ width: 0.5 });
    expect(tf.memory().numTensors).toBe(kept);
    const derived = nested.derived.size;
    nested.clearDerived();
    expect(tf.memory().numTensors).toBe(kept - derived);
    plain.dispose();
    nested.dispose();
    x.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it('exports a sub-network as a plain, smaller graph computing what the nested model computes', async () => {
    const plain = createModel(runtime, residualCnn(), { seed: 3 });
    const nested = await nestModel(plain, { multiple: 2, kernelSizes: [1, 3] });
    const x = seededNormal([2, 8, 8, 1], { seed: 4 });
    const sub = { width: 0.5, depth: 1, kernel: 1 };
    const exported = runPass(runtime, 'sorted-net.export', nested, sub);
    expect(exported.graph.nodes.every((n) => n.op.startsWith('core.'))).toBe(true);
    const small = createModel(runtime, exported.graph, { weights: exported.weights });
    const fullParams = [...nested.params.values()].reduce((a, p) => a + p.size, 0);
    const smallParams = [...small.params.values()].reduce((a, p) => a + p.size, 0);
    expect(smallParams).toBeLessThan(fullParams / 3);
    // A first run keeps the narrowed weights in the model; later runs leak nothing.
    tf.dispose(Object.values((await nested.run({ image: x }, { options: subNetworkOptions(sub) })).outputs));
    await expectNoLeaks(async () => {
      const { outputs: a } = await nested.run({ image: x }, { options: subNetworkOptions(sub) });
      const { outputs: b } = await small.run({ image: x });
      await expectClose(b.logits!, a.logits!);
      tf.dispose([...Object.values(a), ...Object.values(b)]);
    });
    plain.dispose();
    nested.dispose();
    small.dispose();
    x.dispose();
  });
});

describeEachBackend('sorted-net.nest across a depthwise multiplier', () => {
  it('narrows a group whose channels repeat along the depthwise output, and exports it', async () => {
    const b = new GraphBuilder(runtime);
    const image = b.input('image', 'float32', ['batch', 6, 6, 2]);
    let h = b.add('core.Conv2D', image, { filters: 4, kernelSize: [1, 1] }, { name: 'expand' });
    h = b.add(
      'core.DepthwiseConv2D',
      h,
      { kernelSize: [3, 3], padding: 'same', depthMultiplier: 2 },
      { name: 'dw' },
    );
    h = b.add('core.BatchNorm', h, {}, { name: 'dwbn' });
    h = b.add('core.Conv2D', h, { filters: 6, kernelSize: [1, 1] }, { name: 'project' });
    h = b.add('core.GlobalAvgPool2D', h, {}, { name: 'pool' });
    const graph = b.build({ logits: b.add('core.Dense', h, { units: 3 }, { name: 'head' }) });
    const model = createModel(runtime, graph, { seed: 4 });
    const nested = await nestModel(model, { sort: 'none' });
    expect(describeNesting(nested.graph).knobs.map((k) => [k.name, k.size])).toEqual([
      ['expand#out', 4],
      ['project#out', 6],
    ]);
    const x = seededNormal([2, 6, 6, 2], { seed: 9 });
    const sub = { width: 0.5 };
    const exported = runPass(runtime, 'sorted-net.export', nested, sub);
    const small = createModel(runtime, exported.graph, { weights: exported.weights });
    expect(small.params.get('dw/depthwiseKernel')?.shape).toEqual([3, 3, 2, 2]);
    const { outputs: a } = await nested.run({ image: x }, { options: subNetworkOptions(sub) });
    const { outputs: c } = await small.run({ image: x });
    await expectClose(c.logits!, a.logits!);
    tf.dispose([x, ...Object.values(a), ...Object.values(c)]);
    for (const m of [model, nested, small]) m.dispose();
  });
});

describeEachBackend('sorted-net.Nested in training', () => {
  it('a step at half width trains the kept channels and updates only their batch-norm statistics', async () => {
    const plain = createModel(runtime, residualCnn(), { seed: 5 });
    const nested = await nestModel(plain, { sort: 'none' });
    const before = await nested.state.get('s0bn/movingMean')!.data();
    const kernelBefore = await nested.params.get('s0conv/kernel')!.data();
    const trainer = new Trainer(nested, {
      options: subNetworkOptions({ width: 0.5 }),
      optimizer: tf.train.sgd(0.1),
    });
    const x = seededNormal([4, 8, 8, 1], { seed: 1 });
    const y = tf.tensor1d([0, 1, 2, 3], 'int32');
    await expectNoLeaks(() => trainer.step(x, y));
    const after = await nested.state.get('s0bn/movingMean')!.data();
    const kernelAfter = await nested.params.get('s0conv/kernel')!.data();
    const changed = Array.from(after, (v, i) => v !== before[i]);
    expect(changed).toEqual([true, true, true, true, false, false, false, false]);
    // The kernel [3, 3, 1, 8]: output channels 4-7 got no gradient.
    const moved = new Set<number>();
    kernelAfter.forEach((v, i) => {
      if (v !== kernelBefore[i]) moved.add(i % 8);
    });
    expect([...moved].sort()).toEqual([0, 1, 2, 3]);
    tf.dispose([x, y]);
    trainer.dispose();
    plain.dispose();
    nested.dispose();
  });
});
