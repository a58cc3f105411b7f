import {
  createModel,
  fit,
  isDynnError,
  lossFunction,
  type Objective,
  type ObjectiveContext,
} from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks, seededInts, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { nestModel } from './nest-model.js';
import { SORTED_NET_OPTIONS, type SubNetwork } from './options.js';
import { residualCnn, runtime } from './test-models.js';
import { fitSorted, type SortedTrainingOptions, sortedObjective, sortedWindows } from './training.js';

// Sampling never reads the batch's tensors: placeholders stand for them.
const batch = { x: {} as tf.Tensor, y: {} as tf.Tensor };

/** The sub-networks of step `step`'s windows. */
function subsAt(options: SortedTrainingOptions, step: number): SubNetwork[] {
  return sortedWindows(options)(batch, step).map((w) => w.options![SORTED_NET_OPTIONS] as SubNetwork);
}

const space = { widths: [0.25, 0.5, 0.75, 1], depths: [1, 2], kernels: [1, 3] };

describe('sortedWindows', () => {
  it('sandwich: the largest first, then the smallest, then random draws from the space', () => {
    const windows = sortedWindows({ ...space, perStep: 4 })(batch, 3);
    expect(windows).toHaveLength(4);
    for (const w of windows) {
      expect(w.x).toBe(batch.x);
      expect(w.y).toBe(batch.y);
    }
    const subs = windows.map((w) => w.options![SORTED_NET_OPTIONS] as SubNetwork);
    expect(subs[0]).toEqual({ width: 1, depth: 2, kernel: 3 });
    expect(subs[1]).toEqual({ width: 0.25, depth: 1, kernel: 1 });
    for (const sub of subs) {
      expect(space.widths).toContain(sub.width);
      expect(space.depths).toContain(sub.depth);
      expect(space.kernels).toContain(sub.kernel);
    }
    // A dimension left out stays full: the field is absent.
    expect(subsAt({ widths: [0.5, 1], perStep: 2 }, 0)).toEqual([{ width: 1 }, { width: 0.5 }]);
    expect(subsAt({ widths: [0.5, 1], perStep: 1 }, 0)).toEqual([{ width: 1 }]);
    // A space of one sub-network gives one window.
    expect(subsAt({ widths: [0.5] }, 0)).toEqual([{ width: 0.5 }]);
  });

  it('sorted: the largest first, then perStep - 1 uniform draws covering the space', () => {
    const options = { ...space, strategy: 'sorted' as const, perStep: 3 };
    const widths = new Set<number>();
    for (let step = 0; step < 40; step++) {
      const subs = subsAt(options, step);
      expect(subs).toHaveLength(3);
      expect(subs[0]).toEqual({ width: 1, depth: 2, kernel: 3 });
      for (const sub of subs.slice(1)) widths.add(sub.width as number);
    }
    expect([...widths].sort()).toEqual(space.widths);
  });

  it('reproduces with a seed, and another seed draws other sub-networks', () => {
    const steps = Array.from({ length: 20 }, (_, step) => step);
    const draws = (seed: number) => steps.map((step) => subsAt({ ...space, seed }, step));
    expect(draws(7)).toEqual(draws(7));
    expect(draws(7)).not.toEqual(draws(8));
  });

  it('progressive: the largest alone, then kernel, depth and width unlock in order', () => {
    const options = { ...space, strategy: 'progressive' as const, phaseSteps: 2, perStep: 3 };
    const largest = { width: 1, depth: 2, kernel: 3 };
    expect(subsAt(options, 0)).toEqual([largest]);
    expect(subsAt(options, 1)).toEqual([largest]);
    const smallestAt = (step: number) => {
      const subs = subsAt(options, step);
      expect(subs).toHaveLength(3);
      expect(subs[0]).toEqual(largest);
      return subs[1];
    };
    expect(smallestAt(2)).toEqual({ width: 1, depth: 2, kernel: 1 });
    expect(smallestAt(3)).toEqual({ width: 1, depth: 2, kernel: 1 });
    expect(smallestAt(4)).toEqual({ width: 1, depth: 1, kernel: 1 });
    expect(smallestAt(6)).toEqual({ width: 0.25, depth: 1, kernel: 1 });
    // The last phase lasts to the end.
    expect(smallestAt(1000)).toEqual({ width: 0.25, depth: 1, kernel: 1 });
    for (const step of [2, 3]) for (const sub of subsAt(options, step)) expect(sub.width).toBe(1);
    for (const step of [4, 5]) for (const sub of subsAt(options, step)) expect(sub.width).toBe(1);
  });

  it('refuses bad options, naming the field', () => {
    const cases: [SortedTrainingOptions, string][] = [
      [{ widths: [0, 1] }, 'widths'],
      [{ widths: [1.5] }, 'widths'],
      [{ widths: [] }, 'widths'],
      [{ depths: [1.5] }, 'depths'],
      [{ depths: [-1] }, 'depths'],
      [{ kernels: [4] }, 'kernels'],
      [{ perStep: 0 }, 'perStep'],
      [{ perStep: 2.5 }, 'perStep'],
      [{ strategy: 'progressive' }, 'phaseSteps'],
      [{ strategy: 'progressive', phaseSteps: 0 }, 'phaseSteps'],
      [{ strategy: 'sandwich', phaseSteps: 10 }, 'phaseSteps'],
      [{ strategy: 'random' as never }, 'strategy'],
      [{ seed: 0.5 }, 'seed'],
    ];
    for (const [options, field] of cases) {
      let error: unknown;
      try {
        sortedWindows(options);
      } catch (e) {
        error = e;
      }
      expect(isDynnError(error) && error.code === 'INVALID_OPTION', JSON.stringify(options)).toBe(true);
      expect((error as Error).message).toContain(`'${field}'`);
    }
  });
});

/** A function objective, callable (sortedObjective returns one). */
function objectiveFn(objective: Objective): Exclude<Objective, string> {
  if (typeof objective === 'string') throw new Error(`expected a function objective, got '${objective}'`);
  return objective;
}

/** A log-softmax by hand, in float64. */
function logSoftmax(row: number[]): number[] {
  const max = Math.max(...row);
  const log = Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) + max;
  return row.map((v) => v - log);
}

describeEachBackend('sortedObjective and sorted training', () => {
  const student = [
    [1, -0.5, 0.25],
    [0.3, 2, -1],
  ];
  const teacher = [
    [2, 0, -1],
    [-0.5, 1, 0.5],
  ];
  const labels = [0, 2];
  const crossEntropy =
    -(logSoftmax(student[0]!)[labels[0]!]! + logSoftmax(student[1]!)[labels[1]!]!) / labels.length;
  const klAt = (t: number) =>
    student.reduce((sum, row, i) => {
      const p = logSoftmax(teacher[i]!.map((v) => v / t));
      const q = logSoftmax(row.map((v) => v / t));
      return sum + p.reduce((s, lp, c) => s + Math.exp(lp) * (lp - q[c]!), 0);
    }, 0) / student.length;

  it('scores window 0 by the labels, later windows by the labels plus the scaled distillation', async () => {
    await expectNoLeaks(async () => {
      const s = tf.tensor2d(student);
      const t = tf.tensor2d(teacher);
      const y = tf.tensor1d(labels, 'int32');
      const distilling = objectiveFn(sortedObjective({ temperature: 2, distillWeight: 0.5 }));
      const plain = objectiveFn(sortedObjective({ distill: false }));
      const later = (teacherLogits: tf.Tensor): ObjectiveContext => ({
        window: 1,
        earlier: [{ logits: teacherLogits }],
      });
      const scores = [
        distilling({ logits: s }, { logits: y }, { window: 0, earlier: [] }),
        distilling({ logits: s }, { logits: y }, later(t)),
        plain({ logits: s }, { logits: y }, later(t)),
      ];
      await expectClose(scores[0]!, crossEntropy);
      await expectClose(scores[1]!, crossEntropy + 0.5 * 2 ** 2 * klAt(2));
      await expectClose(scores[2]!, crossEntropy);
      // The teacher is a fixed target: no gradient reaches it.
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        distilling({ logits: a }, { logits: y }, later(b)),
      )([s, t]);
      await expectClose(grads[1]!, new Array<number>(6).fill(0));
      const studentGradient = tf.tidy(() => tf.sum(tf.abs(grads[0]!)));
      expect((await studentGradient.data())[0]).toBeGreaterThan(0);
      tf.dispose([s, t, y, ...scores, ...grads, studentGradient]);
    });
  });

  it('trains a nested CNN with sandwich windows and distillation: every sub-network improves, nothing leaks', async () => {
    const plain = createModel(runtime, residualCnn({ widths: [8, 8], blocks: 1, classes: 3 }), { seed: 5 });
    const nested = await nestModel(plain, { multiple: 2 });
    plain.dispose();
    const labels = seededInts([24], 3, { seed: 6 });
    const patterns = seededNormal([3, 8, 8, 1], { seed: 7 });
    const noise = seededNormal([24, 8, 8, 1], { seed: 8, std: 0.5 });
    const x = tf.tidy(() => tf.add(tf.gather(patterns, labels), noise));
    const data = { x, y: labels };
    const subs: SubNetwork[] = [{}, { width: 0.25, depth: 0 }];
    const crossEntropy = lossFunction('sparseCategoricalCrossentropy');
    // Losses in training mode (batch statistics): the moving statistics lag a few steps behind.
    const losses = async () => {
      const out: number[] = [];
      for (const sub of subs) {
        const { outputs } = await nested.run(x, {
          options: { [SORTED_NET_OPTIONS]: sub },
          training: true,
          report: false,
        });
        const loss = crossEntropy(outputs.logits!, labels);
        out.push((await loss.data())[0]!);
        tf.dispose([loss, ...Object.values(outputs)]);
      }
      return out;
    };
    await expectNoLeaks(async () => {
      const optimizer = tf.train.adam(0.01);
      const before = await losses();
      const history = await fit(nested, data, {
        epochs: 2,
        batchSize: 12,
        seed: 1,
        optimizer,
        windows: sortedWindows({ widths: [0.25, 0.5, 1], depths: [0, 1], perStep: 3, seed: 2 }),
        loss: sortedObjective({ temperature: 2 }),
      });
      const after = await losses();
      expect(history.epochs.at(-1)!.loss).toBeLessThan(history.epochs[0]!.loss);
      for (const [i, loss] of after.entries()) expect(loss).toBeLessThan(before[i]!);
      // The optimizer's slots and the narrowed weights inference keeps on the model are not leaks.
      optimizer.dispose();
      nested.clearDerived();
    });
    nested.dispose();
    tf.dispose([labels, patterns, noise, x]);
  });

  it('fitSorted wraps fit with sorted windows and the distilling objective', async () => {
    const plain = createModel(runtime, residualCnn({ widths: [4], blocks: 1, classes: 2 }), { seed: 9 });
    const nested = await nestModel(plain, { multiple: 1 });
    plain.dispose();
    const x = seededNormal([4, 8, 8, 1], { seed: 10 });
    const y = seededInts([4], 2, { seed: 11 });
    await expectNoLeaks(async () => {
      const history = await fitSorted(nested, { x, y }, { batchSize: 4, sorted: { widths: [0.5, 1] } });
      expect(history.epochs).toHaveLength(1);
      expect(Number.isFinite(history.epochs[0]!.loss)).toBe(true);
      await expect(
        fitSorted(nested, { x, y }, { sorted: {}, loss: 'sparseCategoricalCrossentropy', objective: {} }),
      ).rejects.toThrow(/either 'loss' or 'objective'/);
    });
    nested.dispose();
    tf.dispose([x, y]);
  });
});
