import { useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { FASHION_MNIST_CLASS_NAMES, type FashionMnist, loadFashionMnist } from './index.js';

function countPerClass(labels: Uint8Array): number[] {
  const counts = new Array<number>(10).fill(0);
  for (const label of labels) counts[label]!++;
  return counts;
}

describe('loadFashionMnist', () => {
  let data: FashionMnist;
  let loadMs: number;
  beforeAll(async () => {
    await useBackend('cpu');
    const start = performance.now();
    data = await loadFashionMnist();
    loadMs = performance.now() - start;
  });

  it('keeps the official split: 60,000 training and 10,000 test images of 28x28', () => {
    for (const [split, count] of [
      [data.train, 60_000],
      [data.test, 10_000],
    ] as const) {
      expect(split.count).toBe(count);
      expect([split.height, split.width]).toEqual([28, 28]);
      expect(split.images).toHaveLength(count * 28 * 28);
      expect(split.labels).toHaveLength(count);
    }
  });

  it('has 6,000 training and exactly 1,000 test images per class', () => {
    expect(countPerClass(data.train.labels)).toEqual(new Array(10).fill(6_000));
    expect(countPerClass(data.test.labels)).toEqual(new Array(10).fill(1_000));
  });

  it('names the ten classes', () => {
    expect(data.classNames).toBe(FASHION_MNIST_CLASS_NAMES);
    expect(data.classNames).toHaveLength(10);
    expect(data.classNames[0]).toBe('T-shirt/top');
    expect(data.classNames[9]).toBe('Ankle boot');
  });

  it('starts with the published first labels and real pixels', () => {
    expect(Array.from(data.train.labels.subarray(0, 5))).toEqual([9, 0, 0, 3, 0]);
    expect(Array.from(data.test.labels.subarray(0, 5))).toEqual([9, 2, 1, 1, 6]);
    const first = data.train.images.subarray(0, 784);
    expect(Math.max(...first)).toBe(255);
    expect(first.filter((pixel) => pixel === 0).length).toBeGreaterThan(200);
  });

  it('loads within a couple of seconds', () => {
    expect(loadMs).toBeLessThan(5_000);
  });

  it('gives the test split as [10000, 28, 28, 1] float32 images in [0, 1] and int32 labels', async () => {
    const before = tf.memory().numTensors;
    const { images, labels } = data.test.toTensors();
    expect(images.shape).toEqual([10_000, 28, 28, 1]);
    expect(images.dtype).toBe('float32');
    expect(labels.dtype).toBe('int32');
    const range = [tf.min(images), tf.max(images)];
    expect(await Promise.all(range.map(async (value) => (await value.data())[0]))).toEqual([0, 1]);
    tf.dispose(range);
    expect(Array.from((await labels.data()).subarray(0, 3))).toEqual([9, 2, 1]);
    tf.dispose([images, labels]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
