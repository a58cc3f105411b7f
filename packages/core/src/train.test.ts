import { describeEachBackend, expectNoLeaks, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { createModel } from './model.js';
import { createRuntime } from './runtime.js';
import { cosineDecay, evaluate, fit } from './train.js';

const runtime = createRuntime();

/** An MLP with batch norm and dropout, so state updates and training-mode randomness are exercised. */
function mlp() {
  const b = new GraphBuilder(runtime);
  let h = b.input('x', 'float32', ['batch', 4]);
  h = b.add('core.Dense', h, { units: 16 }, { name: 'hidden' });
  h = b.add('core.BatchNorm', h, {}, { name: 'norm' });
  h = b.add('core.Activation', h, { fn: 'relu' });
  h = b.add('core.Dropout', h, { rate: 0.1 });
  return b.build({ logits: b.add('core.Dense', h, { units: 2 }, { name: 'head' }) });
}

/** A toy task: is the sum of the features positive? */
function toyData(rows: number, seed: number) {
  const x = seededNormal([rows, 4], { seed });
  const y = tf.tidy(() => tf.cast(tf.greater(tf.sum(x, 1), 0), 'int32'));
  return { x, y };
}

async function values(model: ReturnType<typeof createModel>) {
  return Promise.all([...model.params.values()].map(async (v) => Array.from(await v.data())));
}

describeEachBackend('fit', () => {
  it('learns, validates, reports progress and leaks nothing', async () => {
    const train = toyData(128, 1);
    const val = toyData(64, 2);
    const model = createModel(runtime, mlp(), { seed: 3 });
    const batches: number[] = [];
    const epochs: number[] = [];
    const movingBefore = Array.from(await model.state.get('norm/movingMean')!.data());
    // The optimizer's slots belong to the caller, so it is disposed inside the checked body.
    const history = await expectNoLeaks(async () => {
      const optimizer = tf.train.adam(0.05);
      const h = await fit(model, train, {
        epochs: 6,
        batchSize: 32,
        optimizer,
        validationData: val,
        seed: 1,
        callbacks: {
          onBatchEnd: (step, logs) => {
            batches.push(step);
            expect(logs.of).toBe(4);
          },
          onEpochEnd: (epoch) => {
            epochs.push(epoch);
          },
        },
      });
      optimizer.dispose();
      return h;
    });
    expect(batches).toHaveLength(24);
    expect(epochs).toEqual([0, 1, 2, 3, 4, 5]);
    const last = history.epochs.at(-1)!;
    expect(last.loss).toBeLessThan(history.epochs[0]!.loss);
    expect(last.accuracy).toBeGreaterThan(0.85);
    expect(last.valAccuracy).toBeGreaterThan(0.8);
    expect(Array.from(await model.state.get('norm/movingMean')!.data())).not.toEqual(movingBefore);
    const result = await expectNoLeaks(() => evaluate(model, val));
    expect(result.accuracy).toBeCloseTo(last.valAccuracy!, 5);
    tf.dispose([train.x, train.y, val.x, val.y]);
    model.dispose();
  });

  it('is reproducible from its seed', async () => {
    const data = toyData(64, 4);
    const runs = [];
    for (let i = 0; i < 2; i++) {
      const model = createModel(runtime, mlp(), { seed: 5 });
      const optimizer = tf.train.sgd(0.1);
      await fit(model, data, { epochs: 2, batchSize: 16, optimizer, seed: 9 });
      runs.push(await values(model));
      optimizer.dispose();
      model.dispose();
    }
    expect(runs[0]).toEqual(runs[1]);
    tf.dispose([data.x, data.y]);
  });

  it('freezes parameters, clips gradients and follows a learning-rate schedule', async () => {
    const data = toyData(32, 6);
    const model = createModel(runtime, mlp(), { seed: 7 });
    const before = await values(model);
    const names = [...model.params.keys()];
    // Frozen head, and a schedule that is zero throughout: nothing may move.
    const sgd = tf.train.sgd(1);
    await fit(model, data, { epochs: 1, batchSize: 32, optimizer: sgd, learningRate: () => 0 });
    expect(await values(model)).toEqual(before);
    await fit(model, data, {
      epochs: 1,
      batchSize: 32,
      optimizer: sgd,
      trainable: (name) => !name.startsWith('head/'),
      clipNorm: 1e-3,
    });
    const after = await values(model);
    names.forEach((name, i) => {
      const moved = Math.hypot(...after[i]!.map((v, j) => v - before[i]![j]!));
      if (name.startsWith('head/')) expect(moved).toBe(0);
      // SGD with rate 1 moves by the clipped gradient: its global norm is at most 1e-3.
      else expect(moved).toBeLessThanOrEqual(1e-3 + 1e-6);
    });
    expect(cosineDecay(1, 0)(0, 10)).toBeCloseTo(1);
    expect(cosineDecay(1, 0)(10, 10)).toBeCloseTo(0);
    sgd.dispose();
    tf.dispose([data.x, data.y]);
    model.dispose();
  });

  it('runs frozen batch norm in inference mode: its moving statistics stay', async () => {
    const data = toyData(32, 9);
    const model = createModel(runtime, mlp(), { seed: 10 });
    const stats = async () =>
      Promise.all([...model.state.values()].map(async (v) => Array.from(await v.data())));
    const before = await stats();
    const sgd = tf.train.sgd(0.1);
    // Only the head trains: the normalisation is frozen, so nothing of it may change.
    await fit(model, data, {
      epochs: 1,
      batchSize: 16,
      optimizer: sgd,
      trainable: (name) => name.startsWith('head/'),
    });
    expect(await stats()).toEqual(before);
    // Trained, it updates its moving statistics as usual.
    await fit(model, data, { epochs: 1, batchSize: 16, optimizer: sgd });
    expect(await stats()).not.toEqual(before);
    sgd.dispose();
    tf.dispose([data.x, data.y]);
    model.dispose();
  });

  it('rejects impossible options and mismatched data with typed errors', async () => {
    const data = toyData(8, 8);
    const model = createModel(runtime, mlp());
    await expect(fit(model, data, { epochs: 0 })).rejects.toSatisfy((e) => isDynnError(e, 'INVALID_OPTION'));
    await expect(fit(model, data, { batchSize: 1.5 })).rejects.toThrow(
      /batchSize must be a positive integer/,
    );
    const short = tf.slice(data.y, 0, 4);
    await expect(fit(model, { x: data.x, y: short })).rejects.toThrow(/x has 8 rows but y has 4/);
    await expect(fit(model, data, { output: 'nope' })).rejects.toThrow(/No graph output 'nope'/);
    tf.dispose([data.x, data.y, short]);
    model.dispose();
  });
});
