import { createModel, DynnError, lossFunction, type Model, Trainer } from '@dynn/core';
import {
  activateBackend,
  describeEachBackend,
  expectNoLeaks,
  seededInts,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  evaluateRobustness,
  pgdAttack,
  robustDistillationObjective,
  robustDistillationWindows,
} from './adversarial.js';
import { nestModel } from './nest-model.js';
import { subNetworkOptions } from './options.js';
import { residualCnn, runtime } from './test-models.js';

const EPSILON = 8 / 255;
const SMALL = subNetworkOptions({ width: 0.5, depth: 1 });

async function crossEntropy(model: Model, x: tf.Tensor, y: tf.Tensor): Promise<number> {
  const { outputs } = await model.run(x, { options: SMALL, report: false });
  const loss = lossFunction('sparseCategoricalCrossentropy')(outputs.logits!, y);
  const [value] = await loss.data();
  tf.dispose([loss, ...Object.values(outputs)]);
  return value!;
}

describeEachBackend('pgdAttack', (backend) => {
  let plain: Model;
  let model: Model;
  let x: tf.Tensor;
  let y: tf.Tensor;
  beforeAll(async () => {
    // The model's variables live on the backend active when it is made.
    await activateBackend(backend);
    plain = createModel(runtime, residualCnn(), { seed: 5 });
    model = await nestModel(plain, { multiple: 2 });
    x = seededUniform([6, 8, 8, 1], { seed: 3, min: 0, max: 1 });
    y = seededInts([6], 10, { seed: 4 });
  });
  afterAll(() => {
    tf.dispose([x, y]);
    plain.dispose();
    model.dispose();
  });

  it('stays within epsilon of x and within [0, 1], and raises the loss over the clean inputs', async () => {
    const adversarial = await pgdAttack(model, x, y, { epsilon: EPSILON, steps: 5, options: SMALL, seed: 1 });
    const [distance, low, high] = await Promise.all(
      tf
        .tidy(() => [tf.max(tf.abs(tf.sub(adversarial, x))), tf.min(adversarial), tf.max(adversarial)])
        .map(async (t) => {
          const [v] = await t.data();
          t.dispose();
          return v!;
        }),
    );
    expect(distance).toBeLessThanOrEqual(EPSILON + 1e-6);
    expect(distance).toBeGreaterThan(EPSILON / 2);
    expect(low).toBeGreaterThanOrEqual(0);
    expect(high).toBeLessThanOrEqual(1);
    expect(await crossEntropy(model, adversarial, y)).toBeGreaterThan(await crossEntropy(model, x, y));
    adversarial.dispose();
  });

  it('is reproducible from its seed, differs with another, and leaks no tensor', async () => {
    const before = tf.memory().numTensors;
    const options = { epsilon: EPSILON, steps: 3, options: SMALL };
    const a = await pgdAttack(model, x, y, { ...options, seed: 7 });
    const b = await pgdAttack(model, x, y, { ...options, seed: 7 });
    const c = await pgdAttack(model, x, y, { ...options, seed: 8 });
    expect(await a.data()).toEqual(await b.data());
    expect(await a.data()).not.toEqual(await c.data());
    tf.dispose([a, b, c]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('attacks with batch statistics in training mode and leaves the moving statistics as they were', async () => {
    const options = { epsilon: EPSILON, steps: 3, options: SMALL, seed: 2 };
    const stateBefore = await Promise.all([...model.state.values()].map((v) => v.data()));
    const before = tf.memory().numTensors;
    const inference = await pgdAttack(model, x, y, options);
    const training = await pgdAttack(model, x, y, { ...options, training: true });
    // Batch statistics of 6 rows differ from the initial moving ones: so do the gradients.
    expect(await training.data()).not.toEqual(await inference.data());
    tf.dispose([inference, training]);
    expect(tf.memory().numTensors).toBe(before);
    const stateAfter = await Promise.all([...model.state.values()].map((v) => v.data()));
    expect(stateAfter).toEqual(stateBefore);
  });

  it.each([
    [{ epsilon: 0, steps: 10 }, 'epsilon must be a finite number > 0'],
    [{ epsilon: -0.1, steps: 10 }, 'epsilon must be a finite number > 0'],
    [{ epsilon: Number.NaN, steps: 10 }, 'epsilon must be a finite number > 0'],
    [{ epsilon: EPSILON, steps: 0 }, 'steps must be a positive integer'],
    [{ epsilon: EPSILON, steps: 2.5 }, 'steps must be a positive integer'],
    [{ epsilon: EPSILON, steps: 10, stepSize: -1 }, 'stepSize must be a finite number > 0'],
    [{ epsilon: EPSILON, steps: 10, clip: [1, 0] }, 'clip must be a range'],
    [{ epsilon: EPSILON, steps: 10, output: 'probs' }, "no output 'probs'"],
  ])('refuses %j with an INVALID_OPTION error', async (options, message) => {
    const before = tf.memory().numTensors;
    const attempt = pgdAttack(model, x, y, options as never);
    await expect(attempt).rejects.toThrow(message);
    await expect(attempt).rejects.toSatisfy((e) => e instanceof DynnError && e.code === 'INVALID_OPTION');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses labels whose rows disagree with the inputs', async () => {
    const labels = tf.tensor1d([1, 2], 'int32');
    await expect(pgdAttack(model, x, labels, { epsilon: EPSILON, steps: 1 })).rejects.toThrow(
      'x and y need the same number of rows',
    );
    labels.dispose();
  });

  it('measures clean and PGD accuracy of a sub-network batch by batch', async () => {
    const result = await expectNoLeaks(() =>
      evaluateRobustness(model, { x, y }, { epsilon: EPSILON, steps: 2, options: SMALL, batchSize: 4 }),
    );
    expect(result.rows).toBe(6);
    for (const accuracy of [result.clean, result.robust]) {
      expect(accuracy * 6).toBeCloseTo(Math.round(accuracy * 6), 10);
      expect(accuracy).toBeGreaterThanOrEqual(0);
      expect(accuracy).toBeLessThanOrEqual(1);
    }
  });

  it('trains students on their PGD inputs to match the teacher on clean ones, in one step', async () => {
    const students = [subNetworkOptions({}), SMALL];
    const trainer = new Trainer(model, {
      loss: robustDistillationObjective({ temperature: 2, alpha: 0.5 }),
      optimizer: tf.train.sgd(0.05),
    });
    const before = new Map([...model.params].map(([name, v]) => [name, v.clone()]));
    await expectNoLeaks(async () => {
      const step = await robustDistillationWindows(model, { x, y }, students, {
        epsilon: EPSILON,
        steps: 2,
        training: true,
      });
      try {
        expect(step.windows).toHaveLength(3);
        expect(step.windows[0]!.x).toBe(x);
        expect(step.windows[2]!.options).toBe(SMALL);
        const result = await trainer.stepWindows(step.windows);
        expect(Number.isFinite(result.loss)).toBe(true);
        expect(result.loss).toBeGreaterThan(0);
      } finally {
        step.dispose();
      }
    });
    const changed = await tf
      .tidy(() => tf.max(tf.abs(tf.sub(model.params.get('head/kernel')!, before.get('head/kernel')!))))
      .data();
    expect(changed[0]).toBeGreaterThan(0);
    tf.dispose([...before.values()]);
    trainer.dispose();
  });

  it('refuses a bad temperature, alpha or an empty student list', async () => {
    expect(() => robustDistillationObjective({ temperature: 0 })).toThrow(DynnError);
    expect(() => robustDistillationObjective({ alpha: 1.5 })).toThrow('alpha must be in [0, 1]');
    await expect(
      robustDistillationWindows(model, { x, y }, [], { epsilon: EPSILON, steps: 1 }),
    ).rejects.toThrow('at least one student');
  });
});
