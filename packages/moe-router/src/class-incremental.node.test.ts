import { isDynnError, useBackend } from '@dynn/core';
import { type FashionMnist, loadFashionMnist } from '@dynn/data-fashion-mnist';
import { expectNoLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ArmResult,
  type ClassIncrementalOptions,
  type ClassIncrementalProgress,
  runClassIncremental,
} from './class-incremental.js';

const TASKS = [
  [0, 1],
  [2, 3],
  [4, 5],
  [6, 7],
  [8, 9],
];

/** A small, fast configuration: a 32-feature autoencoder, 16 heads of 32 keys. */
const SMALL: Partial<ClassIncrementalOptions> = {
  tasks: TASKS,
  encoderEpochs: 2,
  taskEpochs: 2,
  seed: 0,
  autoencoder: { hidden: 64, features: 32 },
  bottleneck: { heads: 16, keysPerHead: 32, kmeansIterations: 10 },
};

/** The first `count` images of a split, as tensors the caller disposes. */
function firstImages(split: FashionMnist['train'], count: number): { images: tf.Tensor; labels: tf.Tensor } {
  const { images, labels } = split.toTensors();
  const out = { images: tf.slice(images, 0, count), labels: tf.slice(labels, 0, count) };
  tf.dispose([images, labels]);
  return out;
}

/** Checks the shape of an arm's results: a growing accuracy matrix, forgetting per earlier task. */
function expectWellFormed(arm: ArmResult, tasks: number): void {
  expect(arm.accuracy.map((row) => row.length)).toEqual(Array.from({ length: tasks }, (_, t) => t + 1));
  expect(arm.seenAccuracy).toHaveLength(tasks);
  expect(arm.forgetting).toHaveLength(tasks - 1);
  for (const value of [...arm.accuracy.flat(), ...arm.seenAccuracy, arm.finalAccuracy]) {
    expect(value).toBeGreaterThanOrEqual(0);
    expect(value).toBeLessThanOrEqual(1);
  }
  // Forgetting is the best earlier accuracy minus the final one.
  arm.forgetting.forEach((f, task) => {
    const best = Math.max(...arm.accuracy.slice(task, tasks - 1).map((row) => row[task]!));
    expect(f).toBeCloseTo(best - arm.accuracy[tasks - 1]![task]!, 10);
  });
  expect(arm.meanForgetting).toBeCloseTo(arm.forgetting.reduce((a, b) => a + b, 0) / (tasks - 1), 10);
  // Every task was learnt when it was trained: well above the 10% of chance.
  arm.accuracy.forEach((row, t) => {
    expect(row[t]).toBeGreaterThan(0.5);
  });
  expect(arm.jointAccuracy).toBeGreaterThan(0.4);
}

describe('runClassIncremental on Fashion-MNIST (real data)', () => {
  let data: FashionMnist;

  beforeAll(async () => {
    await useBackend('wasm');
    data = await loadFashionMnist();
  });

  it('forgets less with the key-value bottleneck than with a fine-tuned linear probe', async () => {
    const train = firstImages(data.train, 1200);
    const test = firstImages(data.test, 600);
    const events: ClassIncrementalProgress[] = [];
    const result = await expectNoLeaks(() =>
      runClassIncremental({
        ...SMALL,
        tasks: TASKS,
        trainImages: train.images,
        trainLabels: train.labels,
        testImages: test.images,
        testLabels: test.labels,
        progress: (event) => events.push(event),
      }),
    );
    expect(result.rows).toEqual({ train: 1200, test: 600 });
    expectWellFormed(result.keyValue, 5);
    expectWellFormed(result.probe, 5);
    // The final accuracy is the last row of the matrix, weighted by each task's test images.
    const labels = await test.labels.data();
    const perTask = TASKS.map((task) => labels.filter((l) => task.includes(l)).length);
    const weighted = result.keyValue.accuracy[4]!.reduce((s, a, t) => s + a * perTask[t]!, 0) / 600;
    expect(result.keyValue.finalAccuracy).toBeCloseTo(weighted, 10);
    expect(result.keyValue.keysUsed).toHaveLength(16);
    for (const used of result.keyValue.keysUsed) {
      expect(used).toBeGreaterThan(1);
      expect(used).toBeLessThanOrEqual(32);
    }
    expect(result.autoencoder.loss).toBeGreaterThan(0);
    expect(result.autoencoder.loss).toBeLessThan(0.2);
    expect(events.map((e) => e.stage)).toEqual([
      'autoencoder',
      'autoencoder',
      'keys',
      ...Array<string>(5).fill('keyValue'),
      ...Array<string>(5).fill('probe'),
    ]);
    // The paper's finding: a task only moves the values of the keys its inputs select, so the
    // bottleneck keeps much of what it learnt on earlier tasks, while the probe's decision
    // boundaries follow the last task.
    expect(result.keyValue.meanForgetting).toBeLessThan(result.probe.meanForgetting);
    expect(result.keyValue.finalAccuracy).toBeGreaterThan(result.probe.finalAccuracy);
    console.info(
      `class-incremental, 1200 train / 600 test images: key-value bottleneck final accuracy ` +
        `${result.keyValue.finalAccuracy.toFixed(3)} (joint ${result.keyValue.jointAccuracy!.toFixed(3)}), ` +
        `mean forgetting ${result.keyValue.meanForgetting.toFixed(3)}; linear probe final accuracy ` +
        `${result.probe.finalAccuracy.toFixed(3)} (joint ${result.probe.jointAccuracy!.toFixed(3)}), ` +
        `mean forgetting ${result.probe.meanForgetting.toFixed(3)}`,
    );
    tf.dispose([train.images, train.labels, test.images, test.labels]);
  });

  it('is deterministic given its seed', async () => {
    const train = firstImages(data.train, 300);
    const test = firstImages(data.test, 100);
    const options: ClassIncrementalOptions = {
      ...SMALL,
      tasks: [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
      ],
      encoderEpochs: 1,
      taskEpochs: 1,
      joint: false,
      bottleneck: { heads: 4, keysPerHead: 16, kmeansIterations: 5 },
      trainImages: train.images,
      trainLabels: train.labels,
      testImages: test.images,
      testLabels: test.labels,
    };
    const strip = ({ keyValue, probe, autoencoder }: Awaited<ReturnType<typeof runClassIncremental>>) => ({
      keyValue: { ...keyValue, seconds: 0 },
      probe: { ...probe, seconds: 0 },
      loss: autoencoder.loss,
    });
    const first = strip(await runClassIncremental(options));
    const second = strip(await runClassIncremental(options));
    expect(second).toEqual(first);
    expect(first.keyValue.jointAccuracy).toBeUndefined();
    tf.dispose([train.images, train.labels, test.images, test.labels]);
  });

  it('refuses bad tasks and labels, naming the fix', async () => {
    const images = tf.zeros([4, 2, 2, 1]);
    const labels = tf.tensor1d([0, 1, 2, 3], 'int32');
    const base = { trainImages: images, trainLabels: labels, testImages: images, testLabels: labels };
    const invalid = (e: unknown) => isDynnError(e, 'INVALID_OPTION');
    await expect(runClassIncremental({ ...base, tasks: [] })).rejects.toThrow(/non-empty list/);
    await expect(runClassIncremental({ ...base, tasks: [[0, 1], [1]] })).rejects.toThrow(
      /class 1 is in tasks 0 and 1/,
    );
    await expect(runClassIncremental({ ...base, tasks: [[0, 5]], classes: 4 })).rejects.toThrow(
      /task 0 holds class 5, but there are 4 classes/,
    );
    await expect(runClassIncremental({ ...base, tasks: [[0, 1]] })).rejects.toThrow(
      /trainLabels holds 2 at row 2, outside \[0, 2\)/,
    );
    const short = tf.tensor1d([0, 1], 'int32');
    await expect(
      runClassIncremental({ ...base, trainLabels: short, tasks: [[0, 1, 2, 3]] }),
    ).rejects.toSatisfy(invalid);
    await expect(
      runClassIncremental({
        ...base,
        tasks: [
          [0, 1],
          [2, 3],
        ],
        taskEpochs: 0,
      }),
    ).rejects.toThrow(/taskEpochs must be an integer >= 1/);
    await expect(
      runClassIncremental({
        ...base,
        tasks: [
          [0, 1],
          [2, 3],
        ],
        bottleneck: { keysPerHead: 8 },
      }),
    ).rejects.toThrow(/4 training images, fewer than bottleneck.keysPerHead \(8\)/);
    tf.dispose([images, labels, short]);
  });
});
