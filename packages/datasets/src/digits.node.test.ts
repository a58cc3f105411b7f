import { useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Digits, loadDigits } from './digits.js';

describe('loadDigits', () => {
  let digits: Digits;
  beforeAll(async () => {
    await useBackend('cpu');
    digits = await loadDigits();
  });

  it('has 1,797 digits of 64 features 0..16 and labels 0..9', () => {
    expect(digits.count).toBe(1_797);
    expect(digits.numFeatures).toBe(64);
    expect(digits.features).toHaveLength(1_797 * 64);
    expect(Math.max(...digits.features)).toBe(16);
    expect(new Set(digits.labels)).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
  });

  it('keeps the rows in file order', () => {
    expect(Array.from(digits.features.subarray(0, 8))).toEqual([0, 0, 5, 13, 9, 1, 0, 0]);
    expect(Array.from(digits.labels.subarray(0, 3))).toEqual([0, 1, 2]);
    expect(digits.labels[1_796]).toBe(8);
  });

  it('gives [1797, 64] float32 features scaled to [0, 1] and int32 labels', async () => {
    const before = tf.memory().numTensors;
    const { features, labels } = digits.toTensors();
    expect(features.shape).toEqual([1_797, 64]);
    expect(labels.shape).toEqual([1_797]);
    expect(labels.dtype).toBe('int32');
    expect(Array.from((await features.data()).subarray(2, 4))).toEqual([5 / 16, 13 / 16]);
    tf.dispose([features, labels]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives the digits at chosen rows, in that order, and rejects rows out of range', async () => {
    const { features, labels } = digits.toTensors([1_796, 0]);
    expect(features.shape).toEqual([2, 64]);
    expect(Array.from(await labels.data())).toEqual([8, 0]);
    expect(Array.from((await features.data()).subarray(64 + 2, 64 + 4))).toEqual([5 / 16, 13 / 16]);
    tf.dispose([features, labels]);
    expect(() => digits.toTensors([1_797])).toThrow(/row 1797 is not in 0\.\.1796/);
  });
});
