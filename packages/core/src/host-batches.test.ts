import { describeEachBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { isDynnError } from './errors.js';
import { HostBatches } from './host-batches.js';

describeEachBackend('HostBatches', () => {
  it('builds batches of any rows and exposes its host copies', async () => {
    const x = tf.tensor2d([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const hosts = await HostBatches.from({ a: x }, 'x');
    expect(hosts.size).toBe(3);
    expect(hosts.names).toEqual(['a']);
    expect(hosts.get('a')!.shape).toEqual([3, 2]);
    expect(hosts.get()).toBeUndefined();
    const batch = hosts.batch([2, 0]) as Record<string, tf.Tensor>;
    expect(Array.from(await batch.a!.data())).toEqual([5, 6, 1, 2]);
    const single = await HostBatches.from(x, 'x');
    expect(Array.from(single.get()!.values)).toEqual([1, 2, 3, 4, 5, 6]);
    tf.dispose([x, batch.a!]);
  });

  it('names values that are not tensors, and NaN or infinite values', async () => {
    const rejects = async (data: unknown, message: RegExp) => {
      const error = await HostBatches.from(data as tf.Tensor, 'x').catch((e: unknown) => e);
      expect(isDynnError(error, 'INVALID_INPUT'), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
    };
    await rejects(
      [[1, 2]],
      /^x is a JavaScript array, not a tf\.Tensor; wrap it with tf\.tensor\(\.\.\.\)\.$/,
    );
    await rejects(new Float32Array(4), /^x is a Float32Array, not a tf\.Tensor/);
    await rejects({ image: [1] }, /^x 'image' is a JavaScript array, not a tf\.Tensor/);
    await rejects(undefined, /^x is missing/);
    await rejects({}, /^x is an empty object/);
    const disposed = tf.zeros([2, 2]);
    disposed.dispose();
    await rejects(disposed, /^x was already disposed/);

    const bad = tf.tensor2d([
      [1, 2],
      [3, Number.NaN],
    ]);
    const hosts = await HostBatches.from({ image: bad }, 'x');
    expect(() => hosts.checkFinite('x', 'Fix it.')).toThrow(
      /^x 'image' contains NaN or infinite values: NaN at row 1 \(element \[1, 1\]\)\. Fix it\.$/,
    );
    const labels = tf.tensor1d([0, 1], 'int32');
    // Integer tensors cannot hold NaN: they are not scanned.
    const intHosts = await HostBatches.from(labels, 'y');
    expect(() => intHosts.checkFinite('y', '')).not.toThrow();
    tf.dispose([bad, labels]);
  });
});
