import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { describeEachBackend } from './backends.js';
import { expectNoLeaks, guardLeaks } from './leak-guard.js';

describeEachBackend('expectNoLeaks', () => {
  it('fails a body that leaks a tensor', async () => {
    let leaked: tf.Tensor | undefined;
    await expect(
      expectNoLeaks(() => {
        leaked = tf.ones([2, 2]);
      }, 'leaky'),
    ).rejects.toThrow(/leaky leaked 1 tensor/);
    leaked?.dispose();
  });

  it('passes a body that disposes what it makes', async () => {
    const total = await expectNoLeaks(async () => {
      const t = tf.tidy(() => tf.sum(tf.ones([3])));
      const value = (await t.data())[0];
      t.dispose();
      return value;
    });
    expect(total).toBe(3);
  });
});

describe('guardLeaks', () => {
  guardLeaks();
  const kept: tf.Tensor[] = [];
  // `fails: true` makes vitest expect this test to fail: the guard's afterEach must throw.
  it.fails('fails the test that leaks', () => {
    kept.push(tf.zeros([1]));
  });
  it('passes a clean test (and cleans up after the leaky one)', () => {
    tf.dispose(kept.splice(0));
    expect(kept).toHaveLength(0);
  });
});
