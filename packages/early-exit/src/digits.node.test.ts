import {
  createModel,
  createRng,
  fit,
  GraphBuilder,
  type Model,
  runPass,
  shuffledIndices,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import { guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticModel } from './add-exits.js';
import { pickOperatingPoint, runOptionsFor, sweepExits } from './calibration.js';
import { slowdownAttack } from './slowdown.js';
import { runtime } from './test-models.js';
import { multiExitObjective } from './training.js';

interface Split {
  x: tf.Tensor2D;
  y: tf.Tensor1D;
}

/** Accuracy of logits against labels. */
async function accuracyOf(logits: tf.Tensor, labels: tf.Tensor): Promise<number> {
  const predicted = tf.argMax(logits, -1);
  const [p, y] = [await predicted.data(), await labels.data()];
  predicted.dispose();
  return p.filter((v, i) => v === y[i]).length / p.length;
}

describe('early exits on the UCI digits (real data)', () => {
  guardLeaks();
  let train: Split;
  let validation: Split;
  let test: Split;
  let model: Model;

  beforeAll(async () => {
    await useBackend('wasm');
    const digits = await loadDigits();
    // A seeded shuffle, then 60% / 20% / 20%.
    const order = shuffledIndices(digits.count, createRng(7));
    const split = (from: number, to: number): Split => {
      const { features, labels } = digits.toTensors(order.subarray(from, to));
      return { x: features, y: labels };
    };
    const [a, b] = [Math.round(digits.count * 0.6), Math.round(digits.count * 0.8)];
    [train, validation, test] = [split(0, a), split(a, b), split(b, digits.count)];

    // A 64-16-64-128-10 MLP with an exit after every hidden layer: the first exit is cheap and weak.
    const builder = new GraphBuilder(runtime);
    let h = builder.input('pixels', 'float32', ['batch', 64]);
    for (const [name, units] of [
      ['h1', 16],
      ['h2', 64],
      ['h3', 128],
    ] as const) {
      h = builder.add('core.Dense', h, { units, activation: 'relu' }, { name });
    }
    const backbone = builder.build({
      logits: builder.add('core.Dense', h, { units: 10 }, { name: 'classifier' }),
    });
    const { graph } = runPass(runtime, 'early-exit.insert-exits', backbone, { every: 1 });
    model = createModel(runtime, graph, { seed: 1 });
    const optimizer = tf.train.adam(3e-3);
    await fit(model, train, {
      epochs: 12,
      batchSize: 32,
      optimizer,
      loss: multiExitObjective({ graph, distillation: { temperature: 2, alpha: 0.5 } }),
    });
    optimizer.dispose();
  });

  afterAll(() => {
    model.dispose();
    tf.dispose([train.x, train.y, validation.x, validation.y, test.x, test.y]);
  });

  it('saves FLOPs at the calibrated point for at most 1 pp of held-out accuracy', async () => {
    const sweep = await sweepExits(model, validation, {
      criterion: 'maxProb',
      thresholds: [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999],
    });
    const point = pickOperatingPoint(sweep, { maxAccuracyDrop: 0.005 });

    // The baseline is the static network: no exit head computed.
    const backbone = staticModel(model);
    const full = await backbone.run(test.x);
    backbone.dispose();
    const dynamic = await model.run(test.x, { outputs: ['logits'], options: runOptionsFor(sweep, point) });
    const fullAccuracy = await accuracyOf(full.outputs.logits!, test.y);
    const dynamicAccuracy = await accuracyOf(dynamic.outputs.logits!, test.y);
    tf.dispose([full.outputs.logits!, dynamic.outputs.logits!]);

    expect(fullAccuracy).toBeGreaterThan(0.9);
    expect(fullAccuracy - dynamicAccuracy).toBeLessThanOrEqual(0.01);
    // Measured, not estimated: the layers after an exit really ran on fewer rows.
    expect(dynamic.report!.flops).toBeLessThan(0.8 * full.report!.flops);
    const served = dynamic.report!.servedBy.logits!;
    // The validation sweep predicts the test run's share of the static network's FLOPs.
    const predicted = point.meanFlops / sweep.full.meanFlops;
    expect(Math.abs(predicted - dynamic.report!.flops / full.report!.flops)).toBeLessThan(0.1);
    expect(served.filter((node) => node === 'exit0').length).toBeGreaterThan(0);
    console.log(
      `digits: full ${(fullAccuracy * 100).toFixed(1)}% at ${(full.report!.flops / served.length / 1e3).toFixed(1)} kFLOPs/row; ` +
        `threshold ${point.threshold}: ${(dynamicAccuracy * 100).toFixed(1)}% at ${(dynamic.report!.flops / served.length / 1e3).toFixed(1)} kFLOPs/row ` +
        `(validation histogram ${point.exitHistogram.join('/')})`,
    );
  });

  it('measures how far a small perturbation pushes rows to deeper exits', async () => {
    const sweep = await sweepExits(model, validation, { criterion: 'maxProb', thresholds: [0.9] });
    const options = runOptionsFor(sweep, sweep.points.find((p) => p.threshold === 0.9)!);
    const attack = await slowdownAttack(model, test.x, { epsilon: 0.1, steps: 3, options });
    const rows = test.x.shape[0];
    expect(attack.clean.histogram.reduce((a, b) => a + b, 0)).toBe(rows);
    expect(attack.attacked.histogram.reduce((a, b) => a + b, 0)).toBe(rows);
    // Lowering every exit's confidence keeps rows in the network longer and costs more FLOPs.
    expect(attack.depthIncrease).toBeGreaterThan(1.05);
    expect(attack.flopsIncrease).toBeGreaterThan(1);
    console.log(
      `digits slowdown (PGD, 3 steps, epsilon 0.1): mean exit depth ${attack.clean.meanDepth.toFixed(2)} -> ` +
        `${attack.attacked.meanDepth.toFixed(2)}, ${attack.clean.mflopsPerSample.toFixed(4)} -> ` +
        `${attack.attacked.mflopsPerSample.toFixed(4)} MFLOPs/row`,
    );
    await expect(slowdownAttack(model, test.x, { epsilon: 0, options })).rejects.toThrow(/epsilon > 0/);
  });
});
