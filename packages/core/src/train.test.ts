import { describeEachBackend, expectNoLeaks, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { createModel } from './model.js';
import { createRuntime } from './runtime.js';
import { cosineDecay, evaluate, fit, Trainer } from './train.js';

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

  it('takes run options per step and a gradient hook that keeps pruned weights at zero', async () => {
    const data = toyData(32, 8);
    const model = createModel(runtime, mlp(), { seed: 9 });
    const kernel = model.params.get('hidden/kernel')!;
    // Prune the first input's weights: the hook masks their gradients, so they stay zero.
    const mask = tf.tidy(() => tf.concat([tf.zeros([1, 16]), tf.ones([3, 16])]));
    kernel.assign(tf.tidy(() => tf.mul(kernel, mask)));
    const steps: number[] = [];
    const hooked: number[] = [];
    await expectNoLeaks(async () => {
      const optimizer = tf.train.adam(0.05);
      await fit(model, data, {
        epochs: 2,
        batchSize: 16,
        optimizer,
        options: (step) => {
          steps.push(step);
          return {};
        },
        onGradients: (grads, { step, params }) => {
          hooked.push(step);
          expect(params.get('hidden/kernel')).toBe(kernel);
          return { ...grads, 'hidden/kernel': tf.mul(grads['hidden/kernel']!, mask) };
        },
      });
      optimizer.dispose();
    });
    expect(steps).toEqual([0, 1, 2, 3]);
    expect(hooked).toEqual([0, 1, 2, 3]);
    const pruned = Array.from(await tf.tidy(() => tf.slice(kernel, [0, 0], [1, 16])).data());
    expect(pruned.every((v) => v === 0)).toBe(true);
    const kept = Array.from(await tf.tidy(() => tf.slice(kernel, [1, 0], [3, 16])).data());
    expect(kept.some((v) => v !== 0)).toBe(true);
    tf.dispose([mask, data.x, data.y]);
    model.dispose();
  });

  it('checks y against the graph outputs and x rows in a trainer step', async () => {
    const data = toyData(8, 10);
    const model = createModel(runtime, mlp(), { seed: 9 });
    const trainer = new Trainer(model, { loss: (outputs) => tf.mean(outputs.logits!) as tf.Scalar });
    const fails = async (y: Parameters<Trainer['step']>[1], pattern: RegExp) => {
      let error: unknown;
      try {
        await trainer.step(data.x, y);
      } catch (e) {
        error = e;
      }
      expect(isDynnError(error) && error.code).toBe('INVALID_INPUT');
      expect((error as Error).message).toMatch(pattern);
    };
    await fails({ probs: data.y }, /y 'probs' names no graph output\. The outputs are: logits/);
    const short = tf.slice(data.y, 0, 5);
    await fails(short, /y has 5 rows but x has 8/);
    const intX = tf.ones([8, 4], 'int32');
    let error: unknown;
    try {
      await trainer.step(intX, data.y);
    } catch (e) {
      error = e;
    }
    expect((error as Error).message).toMatch(/Input 'x' is int32 but the graph expects float32/);
    trainer.dispose();
    tf.dispose([short, intX, data.x, data.y]);
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

  it('names labels out of range, with their row and the number of classes, before training', async () => {
    const x = seededNormal([8, 4], { seed: 11 });
    const y = tf.tensor1d([0, 1, 1, 0, 1, 7, 0, 1], 'int32');
    const negative = tf.tensor1d([0, 1, -1, 0, 1, 0, 0, 1], 'int32');
    const fractional = tf.tensor1d([0, 1, 0.5, 0, 1, 0, 0, 1]);
    const good = tf.tensor1d([0, 1, 1, 0, 1, 0, 0, 1], 'int32');
    const model = createModel(runtime, mlp());
    const before = await values(model);
    const started: number[] = [];
    const callbacks = { onTrainBegin: () => void started.push(1) };
    await expectNoLeaks(async () => {
      await expect(fit(model, { x, y }, { callbacks })).rejects.toSatisfy(
        (e) =>
          isDynnError(e, 'INVALID_INPUT') &&
          /y holds label 7 at row 5, but output 'logits' has 2 classes, so labels must be integers 0\.\.1.*give the output 8 units/.test(
            (e as Error).message,
          ),
      );
      await expect(fit(model, { x, y: negative })).rejects.toThrow(/y holds label -1 at row 2/);
      await expect(fit(model, { x, y: fractional })).rejects.toThrow(
        /y holds 0\.5 at row 2, not a class index/,
      );
      await expect(evaluate(model, { x, y })).rejects.toThrow(/y holds label 7 at row 5/);
      // Validation data is checked before the first epoch, not after it.
      await expect(fit(model, { x, y: good }, { validationData: { x, y } })).rejects.toThrow(
        /validationData\.y holds label 7 at row 5/,
      );
    });
    expect(started).toEqual([]);
    expect(await values(model)).toEqual(before);
    tf.dispose([x, y, negative, fractional, good]);
    model.dispose();
  });

  it('names one-hot targets given to the sparse loss and class indices given to the categorical one', async () => {
    const data = toyData(8, 12);
    const oneHot = tf.oneHot(data.y as tf.Tensor1D, 2);
    const column = tf.reshape(data.y, [8, 1]);
    const model = createModel(runtime, mlp());
    await expect(fit(model, { x: data.x, y: oneHot })).rejects.toSatisfy(
      (e) =>
        isDynnError(e, 'INVALID_INPUT') &&
        /y has shape \[8, 2\]: one-hot rows, but loss 'sparseCategoricalCrossentropy' wants one class index per row, shape \[8\]\. Pass loss: 'categoricalCrossentropy'.*tf\.argMax\(y, -1\)/.test(
          (e as Error).message,
        ),
    );
    await expect(fit(model, data, { loss: 'categoricalCrossentropy' })).rejects.toThrow(
      /y has shape \[8\]: class indices, but loss 'categoricalCrossentropy' wants one-hot rows, shape \[8, 2\]\. Pass loss: 'sparseCategoricalCrossentropy'.*tf\.oneHot\(y, 2\)/,
    );
    await expect(
      evaluate(model, { x: data.x, y: column }, { loss: 'categoricalCrossentropy' }),
    ).rejects.toThrow(/class indices, but loss 'categoricalCrossentropy'/);
    // The right pairings train, and [N, 1] class indices count accuracy by index.
    const sgd = tf.train.sgd(0.1);
    const oneHotRun = await fit(
      model,
      { x: data.x, y: oneHot },
      { loss: 'categoricalCrossentropy', optimizer: sgd },
    );
    expect(oneHotRun.epochs[0]!.accuracy).toBeGreaterThan(0);
    const sparse = await evaluate(model, data);
    const columnar = await evaluate(model, { x: data.x, y: column });
    expect(columnar.accuracy).toBeCloseTo(sparse.accuracy!, 6);
    expect(columnar.loss).toBeCloseTo(sparse.loss, 5);
    // A trainer used directly checks the shape of every batch's targets (no readback needed).
    const trainer = new Trainer(model, { optimizer: sgd });
    await expect(trainer.step(data.x, oneHot)).rejects.toThrow(
      /one-hot rows, but loss 'sparseCategoricalCrossentropy'/,
    );
    sgd.dispose();
    tf.dispose([data.x, data.y, oneHot, column]);
    model.dispose();
  });

  it('names NaN and infinite values in x or y as data, and keeps the learning-rate hint for divergence', async () => {
    const data = toyData(8, 13);
    const values2d = Array.from(await data.x.data());
    values2d[3 * 4 + 1] = Number.NaN;
    const nanX = tf.tensor2d(values2d, [8, 4]);
    const infY = tf.tensor1d([0, 1, 0, 1, Number.POSITIVE_INFINITY, 0, 1, 0]);
    const model = createModel(runtime, mlp());
    await expect(fit(model, { x: nanX, y: data.y })).rejects.toSatisfy(
      (e) =>
        isDynnError(e, 'INVALID_INPUT') &&
        /^x contains NaN or infinite values: NaN at row 3 \(element \[3, 1\]\)\. The data, not the learning rate, is at fault/.test(
          (e as Error).message,
        ),
    );
    await expect(fit(model, { x: data.x, y: infY })).rejects.toThrow(
      /^y contains NaN or infinite values: Infinity at row 4\./,
    );
    await expect(evaluate(model, { x: nanX, y: data.y })).rejects.toThrow(/^x contains NaN.*row 3/);
    // A trainer used directly finds it after the step, from the NaN loss.
    const trainer = new Trainer(model, { optimizer: tf.train.sgd(0.1) });
    await expect(trainer.step({ x: nanX }, data.y)).rejects.toThrow(
      /^x 'x' contains NaN or infinite values: NaN at row 3/,
    );
    model.dispose();

    // Finite data and a learning rate far too high: the loss overflows, and the message says so.
    const b = new GraphBuilder(runtime);
    const input = b.input('x', 'float32', ['batch', 4]);
    const line = createModel(
      runtime,
      b.build({ y: b.add('core.Dense', input, { units: 1 }, { name: 'line' }) }),
    );
    const target = tf.tidy(() => tf.mul(tf.sum(data.x, 1, true), 1e3));
    const sgd = tf.train.sgd(1e6);
    await expect(
      fit(
        line,
        { x: data.x, y: target },
        { loss: 'meanSquaredError', optimizer: sgd, epochs: 20, batchSize: 8 },
      ),
    ).rejects.toThrow(/The loss became (NaN|Infinity) although x and y are finite.*Lower the learning rate/);
    sgd.dispose();
    line.dispose();
    tf.dispose([data.x, data.y, nanX, infY, target]);
  });

  it('finds labels out of range in a trainer step with the loss readback', async () => {
    const x = seededNormal([4, 4], { seed: 14 });
    const y = tf.tensor1d([1, 0, 3, 1], 'int32');
    const model = createModel(runtime, mlp());
    const sgd = tf.train.sgd(0.1);
    const trainer = new Trainer(model, { optimizer: sgd });
    await expectNoLeaks(() =>
      expect(trainer.step(x, y)).rejects.toThrow(
        /y holds label 3 at row 2, but output 'logits' has 2 classes, so labels must be integers 0\.\.1/,
      ),
    );
    sgd.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it('refuses empty data and names values that are not tensors', async () => {
    const model = createModel(runtime, mlp());
    const data = toyData(4, 15);
    const noX = tf.zeros([0, 4]);
    const noY = tf.zeros([0], 'int32');
    await expectNoLeaks(async () => {
      await expect(fit(model, { x: noX, y: noY })).rejects.toThrow(
        /^x and y have no rows \(an empty batch\)/,
      );
      await expect(evaluate(model, { x: noX, y: noY })).rejects.toThrow(/no rows/);
      await expect(fit(model, data, { validationData: { x: noX, y: noY } })).rejects.toThrow(
        /^validationData\.x and validationData\.y have no rows/,
      );
      const rows = (await data.x.array()) as number[][];
      await expect(fit(model, { x: rows as never, y: data.y })).rejects.toSatisfy(
        (e) =>
          isDynnError(e, 'INVALID_INPUT') &&
          (e as Error).message === 'x is a JavaScript array, not a tf.Tensor; wrap it with tf.tensor(...).',
      );
      await expect(fit(model, { x: data.x, y: new Int32Array(4) as never })).rejects.toThrow(
        /^y is an Int32Array, not a tf\.Tensor; wrap it with tf\.tensor\(values, shape\)/,
      );
      await expect(fit(model, { x: { x: rows } as never, y: data.y })).rejects.toThrow(
        /^x 'x' is a JavaScript array, not a tf\.Tensor/,
      );
      await expect(fit(model, { x: data.x } as never)).rejects.toThrow(/^y is missing/);
      const sgd = tf.train.sgd(0.1);
      const trainer = new Trainer(model, { optimizer: sgd });
      await expect(trainer.step(noX, noY)).rejects.toThrow(/Input 'x' is an empty batch/);
      await expect(trainer.step(rows as never, data.y)).rejects.toThrow(/Input 'x' is a JavaScript array/);
      await expect(trainer.step(data.x, [1, 0, 1, 0] as never)).rejects.toThrow(/^y is a JavaScript array/);
      sgd.dispose();
    });
    tf.dispose([data.x, data.y, noX, noY]);
    model.dispose();
  });
});
