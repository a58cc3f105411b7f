import { describeEachBackend, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { takeRows } from './tensor-rows.js';

/** Rows of a row-major array, by position: the reference. */
function referenceRows(values: ArrayLike<number>, rowSize: number, rows: number[]): number[] {
  return rows.flatMap((r) => Array.from(values).slice(r * rowSize, (r + 1) * rowSize));
}

describeEachBackend('takeRows', () => {
  guardLeaks();

  it('takes float32 rows in any order, with runs and repeats', async () => {
    const x = seededUniform([6, 2, 3]);
    const rows = [4, 5, 0, 1, 2, 2, 3];
    const taken = await takeRows(x, Int32Array.from(rows));
    expect(taken.shape).toEqual([7, 2, 3]);
    expect(taken.dtype).toBe('float32');
    expect(Array.from(await taken.data())).toEqual(referenceRows(await x.data(), 6, rows));
    tf.dispose([x, taken]);
  });

  it('takes int32 and bool rows exactly', async () => {
    const ints = tf.tensor([1, 2, 3, 4, 5, 6], [3, 2], 'int32');
    const flags = tf.tensor([1, 0, 0, 1, 1, 1], [3, 2], 'bool');
    for (const x of [ints, flags]) {
      const taken = await takeRows(x, Int32Array.of(2, 0));
      expect(taken.dtype).toBe(x.dtype);
      expect(Array.from(await taken.data())).toEqual(referenceRows(await x.data(), 2, [2, 0]));
      taken.dispose();
    }
    tf.dispose([ints, flags]);
  });

  it('returns an empty tensor for no rows', async () => {
    const x = tf.tensor([1, 2, 3, 4], [2, 2], 'int32');
    const taken = await takeRows(x, new Int32Array(0));
    expect(taken.shape).toEqual([0, 2]);
    expect(taken.dtype).toBe('int32');
    tf.dispose([x, taken]);
  });

  it('returns a new tensor that outlives x when every row is taken in order', async () => {
    const x = seededUniform([3, 2]);
    const expected = Array.from(await x.data());
    const taken = await takeRows(x, Int32Array.of(0, 1, 2));
    expect(taken).not.toBe(x);
    x.dispose();
    expect(Array.from(await taken.data())).toEqual(expected);
    taken.dispose();
  });

  it('rejects rows outside the tensor and scalars', async () => {
    const x = seededUniform([3, 2]);
    await expect(takeRows(x, Int32Array.of(0, 3))).rejects.toThrow(/row 3 is outside a tensor of 3 rows/);
    await expect(takeRows(x, Int32Array.of(-1))).rejects.toThrow(/row -1/);
    const scalar = tf.scalar(1);
    await expect(takeRows(scalar, Int32Array.of(0))).rejects.toThrow(/scalar/);
    tf.dispose([x, scalar]);
  });
});
