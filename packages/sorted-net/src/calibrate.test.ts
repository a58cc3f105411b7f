import { createModel, isDynnError, type Model, type NodeHook } from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks, seededNormal, toleranceFor } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { calibrateBatchNorm } from './calibrate.js';
import { nestModel } from './nest-model.js';
import { NESTED_OP, type NestedAttrs } from './nested-op.js';
import { type SubNetwork, subNetworkKey, subNetworkOptions } from './options.js';
import { residualCnn, runtime } from './test-models.js';

/** The nested batch norms of a model. */
function batchNorms(model: Model): string[] {
  return model.graph.nodes
    .filter((n) => n.op === NESTED_OP && (n.attrs as NestedAttrs).op === 'core.BatchNorm')
    .map((n) => n.name);
}

/** Every state tensor's values, by name. */
async function stateValues(model: Model): Promise<Map<string, number[]>> {
  const values = new Map<string, number[]>();
  for (const [name, v] of model.state) values.set(name, Array.from(await v.data()));
  return values;
}

/**
 * The reference: each batch norm's input in training-mode runs of `sub` on the batches, captured
 * by a hook and pooled with tf.moments (mean and biased variance over rows and positions).
 */
async function referenceMoments(
  model: Model,
  sub: SubNetwork,
  batches: readonly tf.Tensor[],
  nodes: readonly string[],
): Promise<Map<string, { mean: number[]; variance: number[] }>> {
  const inputs = new Map<string, tf.Tensor[]>();
  const hook: NodeHook = {
    beforeNode(event) {
      if (!nodes.includes(event.node.name)) return;
      inputs.set(event.node.name, [...(inputs.get(event.node.name) ?? []), tf.clone(event.inputs[0]!)]);
    },
  };
  for (const x of batches) {
    const { outputs } = await model.run(x, {
      training: true,
      options: subNetworkOptions(sub),
      hooks: [hook],
      report: false,
    });
    tf.dispose(Object.values(outputs));
  }
  const result = new Map<string, { mean: number[]; variance: number[] }>();
  for (const [node, list] of inputs) {
    const { mean, variance } = tf.tidy(() => tf.moments(tf.concat(list, 0), [0, 1, 2]));
    result.set(node, { mean: Array.from(await mean.data()), variance: Array.from(await variance.data()) });
    tf.dispose([mean, variance, ...list]);
  }
  return result;
}

describeEachBackend('calibrateBatchNorm', () => {
  it('recomputes each sub-network’s statistics, an untrained width included, in a new model', async () => {
    const start = tf.memory().numTensors;
    const plain = createModel(runtime, residualCnn(), { seed: 1 });
    const nested = await nestModel(plain, { multiple: 1 });
    plain.dispose();
    const x = seededNormal([6, 8, 8, 1], { seed: 2 });
    const nodes = batchNorms(nested);
    const graphBefore = JSON.stringify(nested.graph);
    const stateBefore = await stateValues(nested);
    const narrow: SubNetwork = { width: 0.375 };
    const shallow: SubNetwork = { width: 0.5, depth: 1 };
    const baseline = tf.memory().numTensors;
    // Batches of 4 and 2 rows: statistics pooled over uneven batches.
    const calibrated = await calibrateBatchNorm(nested, [narrow, {}, shallow], { x }, { batchSize: 4 });
    expect(tf.memory().numTensors).toBe(baseline + calibrated.params.size + calibrated.state.size);

    // The model given is unchanged.
    expect(JSON.stringify(nested.graph)).toBe(graphBefore);
    expect(await stateValues(nested)).toEqual(stateBefore);

    const variant = subNetworkKey(narrow);
    expect(variant).toBe('w0.375');
    const batches = [tf.slice(x, 0, 4), tf.slice(x, 4, 2)];
    const tolerance = toleranceFor() * 10;
    for (const [sub, suffix] of [
      [narrow, `@${variant}`],
      [{}, ''],
    ] as const) {
      const reference = await referenceMoments(nested, sub, batches, nodes);
      expect([...reference.keys()].sort()).toEqual([...nodes].sort());
      for (const [node, { mean, variance }] of reference) {
        const kept = mean.length;
        const calibratedMean = Array.from(await calibrated.state.get(`${node}/movingMean${suffix}`)!.data());
        const calibratedVariance = Array.from(
          await calibrated.state.get(`${node}/movingVariance${suffix}`)!.data(),
        );
        await expectClose(calibratedMean.slice(0, kept), mean, { tolerance, label: `${node} mean` });
        await expectClose(calibratedVariance.slice(0, kept), variance, {
          tolerance,
          label: `${node} variance`,
        });
        // Channels the sub-network drops keep the default statistics.
        expect(calibratedMean.slice(kept)).toEqual(stateBefore.get(`${node}/movingMean`)!.slice(kept));
        expect(calibratedVariance.slice(kept)).toEqual(
          stateBefore.get(`${node}/movingVariance`)!.slice(kept),
        );
      }
      // 0.375 of 8 and of 16 channels: 3 and 6 are recalibrated.
      if (sub === narrow) expect(reference.get('s0bn')!.mean).toHaveLength(3);
    }
    // A batch norm in a residual block the sub-network skips keeps the default statistics.
    const skipped = `s0b1bn1/movingMean@${subNetworkKey(shallow)}`;
    expect(Array.from(await calibrated.state.get(skipped)!.data())).toEqual(
      stateBefore.get('s0b1bn1/movingMean'),
    );
    calibrated.dispose();
    nested.dispose();
    tf.dispose([x, ...batches]);
    expect(tf.memory().numTensors).toBe(start);
  });

  it('makes a sub-network’s inference run use its statistics, with nothing to select', async () => {
    const plain = createModel(runtime, residualCnn(), { seed: 3 });
    const nested = await nestModel(plain, { multiple: 1 });
    plain.dispose();
    const x = seededNormal([5, 8, 8, 1], { seed: 4 });
    const subs: SubNetwork[] = [{ width: 0.375 }, {}, { width: 0.5, depth: 1 }];
    // One batch holding every row: inference with the calibrated statistics computes what a
    // training-mode run (batch statistics) computes.
    const calibrated = await calibrateBatchNorm(nested, subs, { x });
    await expectNoLeaks(async () => {
      for (const sub of subs) {
        const { outputs: inferred } = await calibrated.run(x, {
          options: subNetworkOptions(sub),
          report: false,
        });
        const { outputs: trained } = await nested.run(x, {
          options: subNetworkOptions(sub),
          training: true,
          report: false,
        });
        await expectClose(inferred.logits!, trained.logits!, {
          tolerance: toleranceFor() * 10,
          label: subNetworkKey(sub),
        });
        tf.dispose([...Object.values(inferred), ...Object.values(trained)]);
      }
      calibrated.clearDerived();
      nested.clearDerived();
    });
    calibrated.dispose();
    nested.dispose();
    x.dispose();
  });

  it('refuses a model without nested batch norms, bad options and bad data, leaking nothing', async () => {
    const plain = createModel(runtime, residualCnn({ widths: [4], blocks: 1 }), { seed: 5 });
    const nested = await nestModel(plain, { multiple: 1 });
    const x = seededNormal([2, 8, 8, 1], { seed: 6 });
    const wrongShape = seededNormal([2, 4, 4, 1], { seed: 7 });
    const fails = async (run: () => Promise<Model>, code: string, words: RegExp) => {
      let error: unknown;
      try {
        (await run()).dispose();
      } catch (e) {
        error = e;
      }
      expect(isDynnError(error) ? error.code : error).toBe(code);
      expect((error as Error).message).toMatch(words);
    };
    await expectNoLeaks(async () => {
      await fails(() => calibrateBatchNorm(plain, [{}], { x }), 'INVALID_GRAPH', /nestModel/);
      await fails(() => calibrateBatchNorm(nested, [], { x }), 'INVALID_OPTION', /non-empty list/);
      await fails(() => calibrateBatchNorm(nested, [{ width: 2 }], { x }), 'INVALID_OPTION', /width/);
      await fails(
        () => calibrateBatchNorm(nested, [{}], { x }, { batchSize: 0 }),
        'INVALID_OPTION',
        /'batchSize'/,
      );
      await fails(
        () => calibrateBatchNorm(nested, [{}], { x }, { batches: 1.5 }),
        'INVALID_OPTION',
        /'batches'/,
      );
      await fails(() => calibrateBatchNorm(nested, [{}], { x: wrongShape }), 'INVALID_INPUT', /shape/);
    });
    plain.dispose();
    nested.dispose();
    tf.dispose([x, wrongShape]);
  });
});
