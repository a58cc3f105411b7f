import { createModel, fit, type Graph, GraphBuilder, isDynnError } from '@dynn/core';
import { describeEachBackend, expectClose, guardLeaks, seededInts, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { exitParamFilter } from './exits.js';
import { argMax, graphWithExits, runtime, softmax } from './test-models.js';
import { multiExitObjective } from './training.js';

const EXIT0 = [
  [2, 0.5, -1],
  [0.1, 0.3, 0.2],
];
const EXIT1 = [
  [1, 1.5, 0],
  [-0.5, 0.2, 1.2],
];
const FINAL = [
  [0.3, 2, -0.4],
  [0, -1, 2.5],
];
const HALT0 = [0.8, 0.3];
const HALT1 = [0.6, 0.9];
const LABELS = [1, 2];

const logSoftmax = (row: number[]) => softmax(row).map(Math.log);
const crossEntropy = (rows: number[][]) =>
  -rows.reduce((s, row, r) => s + logSoftmax(row)[LABELS[r]!]!, 0) / rows.length;

/** KL(softmax(final / T) || softmax(exit / T)), averaged over rows. */
function kl(exit: number[][], temperature: number): number {
  return (
    exit.reduce((sum, row, r) => {
      const p = softmax(FINAL[r]!.map((v) => v / temperature));
      const logQ = logSoftmax(row.map((v) => v / temperature));
      return sum + p.reduce((s, pi, c) => s + pi * (Math.log(pi) - logQ[c]!), 0);
    }, 0) / exit.length
  );
}

/** Binary cross-entropy of halting probabilities against "the exit agrees with the final output". */
function haltingLoss(exit: number[][], halt: number[]): number {
  return (
    -exit.reduce((s, row, r) => {
      const target = argMax(row) === argMax(FINAL[r]!) ? 1 : 0;
      return s + target * Math.log(halt[r]!) + (1 - target) * Math.log(1 - halt[r]!);
    }, 0) / exit.length
  );
}

function outputs(): Record<string, tf.Tensor> {
  return {
    logits: tf.tensor2d(FINAL),
    exit0: tf.tensor2d(EXIT0),
    exit1: tf.tensor2d(EXIT1),
    halt0: tf.tensor2d(HALT0, [2, 1]),
    halt1: tf.tensor2d(HALT1, [2, 1]),
  };
}

/** An MLP with two exits (and halting heads), for training tests. */
function mlpWithExits(): Graph {
  const b = new GraphBuilder(runtime);
  let h = b.input('x', 'float32', ['batch', 4]);
  for (const name of ['d1', 'd2']) h = b.add('core.Dense', h, { units: 6, activation: 'relu' }, { name });
  const graph = b.build({ logits: b.add('core.Dense', h, { units: 3 }, { name: 'out' }) });
  return graphWithExits(graph, { every: 1, head: 'mlp', hidden: 5, halting: true });
}

describeEachBackend('multiExitObjective', () => {
  guardLeaks();

  it('is the weighted sum of the exits and final cross-entropies', async () => {
    const outs = outputs();
    const labels = tf.tensor1d(LABELS, 'int32');
    const loss = multiExitObjective({ haltingWeight: 0 })(outs, { logits: labels });
    await expectClose(loss, crossEntropy(EXIT0) + crossEntropy(EXIT1) + crossEntropy(FINAL));
    const weighted = multiExitObjective({ weights: [0.5, 0.25, 2], haltingWeight: 0 })(outs, {
      logits: labels,
    });
    await expectClose(
      weighted,
      0.5 * crossEntropy(EXIT0) + 0.25 * crossEntropy(EXIT1) + 2 * crossEntropy(FINAL),
    );
    tf.dispose([loss, weighted, labels, ...Object.values(outs)]);
  });

  it('adds self-distillation at a temperature and the halting heads loss', async () => {
    const outs = outputs();
    const labels = tf.tensor1d(LABELS, 'int32');
    const [t, alpha] = [2, 0.3];
    const objective = multiExitObjective({
      weights: [0.5, 0.7, 1],
      distillation: { temperature: t, alpha },
      haltingWeight: 0.4,
    });
    const loss = objective(outs, { logits: labels });
    const exitLoss = (exit: number[][]) => (1 - alpha) * crossEntropy(exit) + alpha * t * t * kl(exit, t);
    const expected =
      0.5 * exitLoss(EXIT0) +
      0.7 * exitLoss(EXIT1) +
      crossEntropy(FINAL) +
      0.4 * (haltingLoss(EXIT0, HALT0) + haltingLoss(EXIT1, HALT1));
    await expectClose(loss, expected);
    tf.dispose([loss, labels, ...Object.values(outs)]);
  });

  it('counts every position of per-position outputs [batch, time, classes] as a row', async () => {
    // The two rows above as one sequence of two positions, labels [batch, time].
    const rows = outputs();
    const outs = Object.fromEntries(
      Object.entries(rows).map(([name, t]) => [name, tf.reshape(t, [1, 2, t.shape[1]!])]),
    );
    const labels = tf.tensor2d([LABELS], [1, 2], 'int32');
    const [t, alpha] = [2, 0.3];
    const loss = multiExitObjective({ distillation: { temperature: t, alpha } })(outs, { logits: labels });
    const exitLoss = (exit: number[][]) => (1 - alpha) * crossEntropy(exit) + alpha * t * t * kl(exit, t);
    const expected =
      exitLoss(EXIT0) +
      exitLoss(EXIT1) +
      crossEntropy(FINAL) +
      haltingLoss(EXIT0, HALT0) +
      haltingLoss(EXIT1, HALT1);
    await expectClose(loss, expected);
    tf.dispose([loss, labels, ...Object.values(outs), ...Object.values(rows)]);
  });

  it('treats the final output as a fixed teacher', async () => {
    const outs = outputs();
    const labels = tf.tensor1d(LABELS, 'int32');
    const distilled = multiExitObjective({ distillation: { temperature: 3, alpha: 1 }, haltingWeight: 0 });
    const plain = multiExitObjective({ weights: [0, 0, 1], haltingWeight: 0 });
    const gradOf = (objective: typeof plain) =>
      tf.grad((final: tf.Tensor) => objective({ ...outs, logits: final }, { logits: labels }))(outs.logits!);
    const [withKl, withoutKl] = [gradOf(distilled), gradOf(plain)];
    // The KL terms move the exits only: the final logits get the cross-entropy gradient alone.
    await expectClose(withKl, withoutKl);
    tf.dispose([withKl, withoutKl, labels, ...Object.values(outs)]);
  });

  it('finds exits by graph and rejects bad options', async () => {
    const graph = mlpWithExits();
    const outs = outputs();
    const labels = tf.tensor1d(LABELS, 'int32');
    const byGraph = multiExitObjective({ graph, haltingWeight: 0 });
    const byName = multiExitObjective({ haltingWeight: 0 });
    const [a, b] = [byGraph, byName].map((objective) => objective(outs, { logits: labels }));
    await expectClose(a!, b!);
    tf.dispose([a!, b!]);
    const errors = [
      () => multiExitObjective({ distillation: { temperature: 0, alpha: 0.5 } }),
      () => multiExitObjective({ distillation: { temperature: 2, alpha: 1.5 } }),
      () => multiExitObjective({ weights: [1, 1] })(outs, { logits: labels }),
    ];
    const messages = [
      /temperature must be > 0/,
      /alpha must lie in \[0, 1\]/,
      /weights has 2 entries; it needs 3/,
    ];
    errors.forEach((make, i) => {
      let error: unknown;
      try {
        make();
      } catch (e) {
        error = e;
      }
      expect(isDynnError(error, 'INVALID_OPTION')).toBe(true);
      expect((error as Error).message).toMatch(messages[i]!);
    });
    tf.dispose([labels, ...Object.values(outs)]);
  });

  it('trains only the exits in retrofit mode', async () => {
    const graph = mlpWithExits();
    const model = createModel(runtime, graph, { seed: 2 });
    const trainable = exitParamFilter(model);
    const names = graph.params.map((p) => p.name);
    expect(names.filter(trainable)).toEqual(names.filter((n) => n.startsWith('exit')));
    expect(names.filter(trainable)).toContain('exit1/haltKernel');
    const before = new Map<string, number[]>();
    for (const [name, v] of model.params) before.set(name, Array.from(await v.data()));
    const x = seededUniform([16, 4], { seed: 3 });
    const y = seededInts([16], 3, { seed: 4 });
    const optimizer = tf.train.sgd(0.1);
    await fit(
      model,
      { x, y },
      { epochs: 1, batchSize: 8, optimizer, loss: multiExitObjective({ graph }), trainable },
    );
    optimizer.dispose();
    for (const [name, v] of model.params) {
      const after = Array.from(await v.data());
      if (trainable(name)) expect(after, name).not.toEqual(before.get(name));
      else expect(after, name).toEqual(before.get(name));
    }
    tf.dispose([x, y]);
    model.dispose();
  });
});
