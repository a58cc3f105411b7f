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
import { scatterAddOp, scatterAddRows } from './scatter-add.js';
import { opInputGrads } from './sparse-test-utils.js';

/** Rows of a 5-row base: row 3 three times, row 0 once, rows 1, 2 and 4 never. */
const INDICES = [3, 0, 3, 3];

describeEachBackend('core.ScatterAdd', () => {
  guardLeaks();

  it('adds update rows into base, repeated indices accumulating', async () => {
    const base = seededUniform([5, 2, 2], { seed: 1, min: -1, max: 1 });
    const updates = seededUniform([4, 2, 2], { seed: 2, min: -1, max: 1 });
    const indices = tf.tensor1d(INDICES, 'int32');
    const expected = Float32Array.from(await base.data());
    const u = await updates.data();
    INDICES.forEach((row, k) => {
      for (let j = 0; j < 4; j++) expected[row * 4 + j]! += u[k * 4 + j]!;
    });
    const { outputs } = await runOp(scatterAddOp, { inputs: [base, indices, updates] });
    expect(outputs[0]!.shape).toEqual([5, 2, 2]);
    await expectClose(outputs[0]!, expected);
    // No updates: base unchanged.
    const noIds = tf.tensor1d([], 'int32');
    const none = tf.zeros([0, 2, 2]);
    const same = scatterAddRows(base, noIds, none);
    await expectClose(same, base);
    tf.dispose([base, updates, indices, noIds, none, same, ...outputs]);
  });

  it('sends base dy and updates gather(dy, indices)', async () => {
    const base = seededUniform([5, 3], { seed: 3 });
    const updates = seededUniform([4, 3], { seed: 4 });
    const indices = tf.tensor1d(INDICES, 'int32');
    const weights = seededUniform([5, 3], { seed: 5, min: -1, max: 1 });
    const w = await weights.data();
    const [dBase, dUpdates] = opInputGrads(scatterAddOp, {}, [base, indices, updates], weights, [0, 2]);
    await expectClose(dBase!, w);
    await expectClose(
      dUpdates!,
      INDICES.flatMap((row) => Array.from(w.slice(row * 3, row * 3 + 3))),
    );
    tf.dispose([base, updates, indices, weights, dBase!, dUpdates!]);
  });

  it('has finite-difference gradients', async () => {
    const base = seededUniform([5, 3], { seed: 6 });
    const updates = seededUniform([4, 3], { seed: 7 });
    const indices = tf.tensor1d(INDICES, 'int32');
    await checkOpGradients(scatterAddOp, { inputs: [base, indices, updates] });
    tf.dispose([base, updates, indices]);
  });
});

describe('core.ScatterAdd shapes, errors, channels and FLOPs', () => {
  const attrs = resolveAttrs(scatterAddOp, {}, 'scatter');
  const base: ValueInfo = { name: 'base', dtype: 'float32', shape: [BATCH, 8] };
  const ids: ValueInfo = { name: 'ids', dtype: 'int32', shape: ['tokens'] };
  const updates: ValueInfo = { name: 'updates', dtype: 'float32', shape: ['tokens', 8] };

  it("gives the base's shape, symbolic dimensions kept", () => {
    expect(scatterAddOp.inferShape(attrs, [base, ids, updates])).toEqual([
      { shape: [BATCH, 8], dtype: 'float32' },
    ]);
  });

  it('names what is wrong: dtypes, ranks, row counts, row shapes', async () => {
    const fail = (inputs: ValueInfo[], pattern: RegExp) =>
      expect(() => scatterAddOp.inferShape(attrs, inputs)).toThrow(pattern);
    fail(
      [base, { ...ids, dtype: 'float32' }, updates],
      /ScatterAdd needs int32 indices, got float32\[tokens\]/,
    );
    fail([base, ids, { ...updates, dtype: 'int32' }], /float32 base and updates, got float32 and int32/);
    fail([base, { ...ids, shape: ['tokens', 1] }, updates], /indices of rank 1, got \[tokens, 1\]/);
    fail([base, ids, { ...updates, shape: ['tokens', 8, 1] }], /updates of the base's rank/);
    fail(
      [base, ids, { ...updates, shape: ['edges', 8] }],
      /one update row per index.*\(edges against tokens\)/,
    );
    fail(
      [base, ids, { ...updates, shape: ['tokens', 4] }],
      /shaped like base rows on axis 1.*\(4 against 8\)/,
    );
    const x = tf.zeros([3, 2]);
    const rows = tf.zeros([2, 2]);
    const floatIds = tf.zeros([2]);
    const wrong = tf.tensor1d([0, 1, 2], 'int32');
    await expect(runOp(scatterAddOp, { inputs: [x, floatIds, rows] })).rejects.toThrow(/int32 indices/);
    await expect(runOp(scatterAddOp, { inputs: [x, wrong, rows] })).rejects.toThrow(
      /indices \[k\] and updates \[k, \.\.\.row\] for base \[n, \.\.\.row\]; got base \[3, 2\], indices \[3\], updates \[2, 2\]/,
    );
    tf.dispose([x, rows, floatIds, wrong]);
  });

  it('ties the row axes of base and updates to the output; indices hold none', () => {
    const y: ValueInfo = { name: 'y', dtype: 'float32', shape: [BATCH, 8] };
    expect(scatterAddOp.channels!(attrs, [base, ids, updates], [y])).toEqual({
      spaces: { axis1: 8 },
      axes: [
        { tensor: inputTensor(0), axis: 1, space: 'axis1' },
        { tensor: inputTensor(2), axis: 1, space: 'axis1' },
        { tensor: outputTensor(0), axis: 1, space: 'axis1' },
      ],
    });
  });

  it('counts an add per update element and per output element', () => {
    expect(scatterAddOp.flops(attrs, [[5, 3], [4], [4, 3]], [[5, 3]])).toBe(12 + 15);
  });
});
