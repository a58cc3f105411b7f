import { describeEachBackend, guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { DerivedTensors } from './derived-tensors.js';

describeEachBackend('DerivedTensors', () => {
  guardLeaks();

  it('makes a derived tensor once per change of its sources, evicts the oldest and frees all', async () => {
    const initial = tf.tensor1d([1, 2, 3, 4]);
    const w = tf.variable(initial);
    initial.dispose();
    const cache = new DerivedTensors(2);
    let made = 0;
    const half = () =>
      cache.get('half', [w], () => {
        made++;
        return tf.slice(w, 0, 2);
      });
    const first = half();
    expect(half()).toBe(first);
    expect(made).toBe(1);
    const next = tf.tensor1d([5, 6, 7, 8]);
    w.assign(next);
    next.dispose();
    const second = half();
    expect(made).toBe(2);
    expect(first.isDisposed).toBe(true);
    expect(Array.from(await second.data())).toEqual([5, 6]);
    cache.get('a', [w], () => tf.slice(w, 1, 1));
    cache.get('b', [w], () => tf.slice(w, 2, 1));
    expect(cache.size).toBe(2);
    expect(second.isDisposed).toBe(true);
    cache.dispose();
    expect(cache.size).toBe(0);
    w.dispose();
  });
});
