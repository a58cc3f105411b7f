import { activateBackend, describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { gatherRows } from './gather-rows.js';

/** Ids with repeats (row 1 three times, row 4 twice) and a row never taken (row 2). */
const ids = [1, 4, 1, 0, 3, 1, 4, 5];

/**
 * Value and table gradient of `sum(gather(table, ids) * weights)` for ids of shape [2, 4]:
 * `gather` is tf.gather or gatherRows.
 */
function valueAndTableGrad(gather: (table: tf.Tensor, indices: tf.Tensor) => tf.Tensor): tf.Tensor[] {
  const table = seededUniform([6, 2, 3], { seed: 1 });
  const weights = seededUniform([2, 4, 2, 3], { seed: 2 });
  const { value, grads } = tf.valueAndGrads((t: tf.Tensor) =>
    // The ids are made and disposed inside the forward pass: the gradient must not need them later.
    tf.sum(
      tf.mul(
        tf.tidy(() => gather(t, tf.tensor(ids, [2, 4], 'int32'))),
        weights,
      ),
    ),
  )([table]);
  tf.dispose([table, weights]);
  return [value, ...grads];
}

describeEachBackend('gatherRows', (backend) => {
  guardLeaks();

  it("equals tf.gather and cpu's native tf.gather gradient, adding up repeated ids", async () => {
    await activateBackend('cpu');
    const native = valueAndTableGrad(tf.gather);
    const expected = await Promise.all(native.map(async (t) => await t.data()));
    tf.dispose(native);
    await activateBackend(backend);
    const actual = valueAndTableGrad(gatherRows);
    await expectClose(actual[0]!, expected[0]!, { label: 'value' });
    await expectClose(actual[1]!, expected[1]!, { label: 'table gradient' });
    expect(actual[1]!.shape).toEqual([6, 2, 3]);
    tf.dispose(actual);
  });

  it('gives [...ids.shape, ...row] and a zero gradient for no ids', async () => {
    const table = seededUniform([3, 2]);
    const none = tf.tensor([], [0], 'int32');
    // dy given explicitly: summing an empty tensor fails on webgl and webgpu.
    const dy = tf.zeros([0, 2]);
    const grad = tf.grad((t: tf.Tensor) => gatherRows(t, none))(table, dy);
    expect(Array.from(await grad.data())).toEqual([0, 0, 0, 0, 0, 0]);
    const picked = tf.tensor([[2], [0]], [2, 1], 'int32');
    const rows = gatherRows(table, picked);
    expect(rows.shape).toEqual([2, 1, 2]);
    const values = await table.data();
    await expectClose(rows, [...values.slice(4, 6), ...values.slice(0, 2)]);
    tf.dispose([table, none, dy, grad, picked, rows]);
  });
});
