import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import { BATCH, type ValueInfo } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { gatherOp } from './gather.js';
import { forwardOnce, opInputGrads } from './sparse-test-utils.js';

/** Indices of shape [2, 3] with repeats (row 1 three times) and a row never picked (row 2). */
const INDICES = [1, 4, 1, 0, 3, 1];

/** Row `i` of `table` (rows of `rowSize`), for each index. */
function referenceGather(table: ArrayLike<number>, rowSize: number, indices: readonly number[]): number[] {
  return indices.flatMap((i) => Array.from({ length: rowSize }, (_, j) => table[i * rowSize + j]!));
}

describeEachBackend('core.Gather', () => {
  guardLeaks();

  it('picks rows by indices of any shape, repeats included, float32 and int32 params', async () => {
    const params = seededUniform([5, 2, 3], { seed: 1, min: -1, max: 1 });
    const values = await params.data();
    const indices = tf.tensor(INDICES, [2, 3], 'int32');
    // Called directly: the op harness would name the indices' first dimension `batch` too.
    const out = forwardOnce(gatherOp, {}, [params, indices]);
    expect(out.shape).toEqual([2, 3, 2, 3]);
    await expectClose(out, referenceGather(values, 6, INDICES));
    const ints = tf.tensor2d([10, 11, 20, 21, 30, 31], [3, 2], 'int32');
    const scalar = tf.scalar(2, 'int32');
    const picked = await runOp(gatherOp, { inputs: [ints, scalar] });
    expect(picked.outputs[0]!.dtype).toBe('int32');
    expect(Array.from(await picked.outputs[0]!.data())).toEqual([30, 31]);
    tf.dispose([params, indices, ints, scalar, out, ...picked.outputs]);
  });

  it('sends params the scatter-add of the output gradient (repeats add up, unpicked rows get 0)', async () => {
    const params = seededUniform([5, 3], { seed: 2 });
    const indices = tf.tensor(INDICES, [2, 3], 'int32');
    const weights = seededUniform([2, 3, 3], { seed: 3, min: -1, max: 1 });
    const w = await weights.data();
    const expected = new Float32Array(15);
    INDICES.forEach((row, k) => {
      for (let j = 0; j < 3; j++) expected[row * 3 + j]! += w[k * 3 + j]!;
    });
    const [grad] = opInputGrads(gatherOp, {}, [params, indices], weights, [0]);
    await expectClose(grad!, expected);
    tf.dispose([params, indices, weights, grad!]);
  });

  it('has finite-difference gradients', async () => {
    const params = seededUniform([5, 3], { seed: 4 });
    const indices = tf.tensor(INDICES, [2, 3], 'int32');
    await checkOpGradients(gatherOp, { inputs: [params, indices] });
    tf.dispose([params, indices]);
  });
});

describe('core.Gather shapes, errors, channels and FLOPs', () => {
  const attrs = resolveAttrs(gatherOp, {}, 'gather');
  const table: ValueInfo = { name: 'table', dtype: 'float32', shape: [BATCH, 8, 'w'] };
  const ids: ValueInfo = { name: 'ids', dtype: 'int32', shape: ['tokens', 2] };

  it('gives [...indices, ...row], symbolic dimensions kept', () => {
    expect(gatherOp.inferShape(attrs, [table, ids])).toEqual([
      { shape: ['tokens', 2, 8, 'w'], dtype: 'float32' },
    ]);
    expect(gatherOp.inferShape(attrs, [table, { ...ids, shape: [] }])).toEqual([
      { shape: [8, 'w'], dtype: 'float32' },
    ]);
  });

  it('names what is wrong: float or bool indices, bool or scalar params', async () => {
    expect(() => gatherOp.inferShape(attrs, [table, { ...ids, dtype: 'float32' }])).toThrow(
      /Gather needs int32 indices, got float32\[tokens, 2\]; cast them/,
    );
    expect(() => gatherOp.inferShape(attrs, [{ ...table, dtype: 'bool' }, ids])).toThrow(
      /float32 or int32 params, got bool/,
    );
    expect(() => gatherOp.inferShape(attrs, [{ ...table, shape: [] }, ids])).toThrow(/rank >= 1/);
    const x = tf.zeros([3, 2]);
    const floatIds = tf.zeros([2]);
    await expect(runOp(gatherOp, { inputs: [x, floatIds] })).rejects.toThrow(
      /int32 indices, got float32\[2\]/,
    );
    tf.dispose([x, floatIds]);
  });

  it('ties the row axes of params to the output after the index axes; indices hold none', () => {
    const fixed: ValueInfo = { name: 'table', dtype: 'float32', shape: [BATCH, 8, 4] };
    const y: ValueInfo = { name: 'y', dtype: 'float32', shape: ['tokens', 2, 8, 4] };
    expect(gatherOp.channels!(attrs, [fixed, ids], [y])).toEqual({
      spaces: { axis1: 8, axis2: 4 },
      axes: [
        { tensor: inputTensor(0), axis: 1, space: 'axis1' },
        { tensor: outputTensor(0), axis: 2, space: 'axis1' },
        { tensor: inputTensor(0), axis: 2, space: 'axis2' },
        { tensor: outputTensor(0), axis: 3, space: 'axis2' },
      ],
    });
    // Scalar indices: the output's first axis is its batch axis, no channel axis.
    const row: ValueInfo = { name: 'y', dtype: 'float32', shape: [8, 4] };
    expect(gatherOp.channels!(attrs, [fixed, { ...ids, shape: [] }], [row])).toEqual({
      spaces: { axis2: 4 },
      axes: [
        { tensor: inputTensor(0), axis: 2, space: 'axis2' },
        { tensor: outputTensor(0), axis: 1, space: 'axis2' },
      ],
    });
  });

  it('moves data without arithmetic', () => {
    expect(
      gatherOp.flops(
        attrs,
        [
          [5, 3],
          [2, 3],
        ],
        [[2, 3, 3]],
      ),
    ).toBe(0);
  });
});
