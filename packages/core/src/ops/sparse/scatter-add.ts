import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { gatherRows, scatterRows } from '../basic/gather-rows.js';
import { withSavedGrad } from '../basic/saved-grad.js';
import { formatShape, product } from '../basic/shape-helpers.js';
import { checkIndices, checkSameDim, rowChannels } from './sparse-helpers.js';

/**
 * `base` (`[n, ...row]`, float32) with the rows of `updates` (`[k, ...row]`) added at rows
 * `indices` (int32 `[k]`, each in `[0, n)`); repeated indices accumulate. Returns a new tensor of
 * `base`'s shape. Built on `tf.scatterND`, on every backend.
 *
 * Gradients (tfjs has none for `tf.scatterND`): `base` gets `dy`, `updates` gets
 * `gatherRows(dy, indices)`, `indices` none. Nothing is read back.
 */
export function scatterAddRows(base: tf.Tensor, indices: tf.Tensor, updates: tf.Tensor): tf.Tensor {
  checkIndices('scatterAddRows', 'indices', indices);
  if (base.dtype !== 'float32' || updates.dtype !== 'float32') {
    throw new Error(`scatterAddRows needs float32 base and updates, got ${base.dtype} and ${updates.dtype}`);
  }
  const k = indices.shape[0];
  const rowsMatch =
    base.rank >= 1 &&
    updates.rank === base.rank &&
    updates.shape.every((d, axis) => d === (axis === 0 ? k : base.shape[axis]));
  if (indices.rank !== 1 || !rowsMatch) {
    throw new Error(
      `scatterAddRows needs indices [k] and updates [k, ...row] for base [n, ...row]; got base ` +
        `${formatShape(base.shape)}, indices ${formatShape(indices.shape)}, updates ${formatShape(updates.shape)}`,
    );
  }
  return withSavedGrad(
    [base, updates],
    [indices],
    (b, u) => tf.tidy(() => tf.add(b!, scatterRows(indices, u!, b!.shape[0]!))),
    (dy, [ids]) => [tf.clone(dy), ids!.size === 0 ? tf.zeros(updates.shape) : gatherRows(dy, ids!)],
  );
}

/**
 * `core.ScatterAdd`: adds rows of `updates` into `base` at rows `indices`, repeated indices
 * accumulating (PyTorch's `index_add` on the first axis), on every backend (see
 * {@link scatterAddRows}).
 *
 * - inputs: `base` `[n, ...row]` float32, `indices` `[k]` int32 in `[0, n)`, `updates`
 *   `[k, ...row]` float32
 * - output: `[n, ...row]`
 * - gradients: `base` gets `dy`; `updates` gets `gather(dy, indices)`; `indices` none
 *
 * Channels: each row axis of `base` and `updates` is tied to the same axis of the output. FLOPs:
 * one add per element of `updates` (the scatter) and one per element of the output (adding the
 * scattered rows to `base`).
 */
export const scatterAddOp = defineOp({
  type: 'core.ScatterAdd',
  version: 2,
  description:
    'Adds rows of updates into base at int32 row indices (repeats accumulate): [n, ...row] -> [n, ...row].',
  attrs: {},
  inputs: { min: 3 },
  inferShape(_, [base, indices, updates]) {
    if (base!.dtype !== 'float32' || updates!.dtype !== 'float32') {
      throw new Error(`ScatterAdd needs float32 base and updates, got ${base!.dtype} and ${updates!.dtype}`);
    }
    if (base!.shape.length < 1) throw new Error('ScatterAdd needs a base of rank >= 1, got a scalar');
    checkIndices('ScatterAdd', 'indices', indices!);
    if (indices!.shape.length !== 1) {
      throw new Error(`ScatterAdd needs indices of rank 1, got ${formatShape(indices!.shape)}`);
    }
    const shapes = `base ${formatShape(base!.shape)}, indices ${formatShape(indices!.shape)}, updates ${formatShape(updates!.shape)}`;
    if (updates!.shape.length !== base!.shape.length) {
      throw new Error(`ScatterAdd needs updates of the base's rank (${shapes})`);
    }
    checkSameDim(
      'ScatterAdd',
      updates!.shape[0]!,
      indices!.shape[0]!,
      `needs one update row per index (${shapes})`,
    );
    for (let axis = 1; axis < base!.shape.length; axis++) {
      checkSameDim(
        'ScatterAdd',
        updates!.shape[axis]!,
        base!.shape[axis]!,
        `needs update rows shaped like base rows on axis ${axis} (${shapes})`,
      );
    }
    return [{ shape: base!.shape, dtype: 'float32' }];
  },
  channels: (_, inputs, [y]) => rowChannels(inputs, [0, 2], y!),
  forward: (_, [base, indices, updates]) => [scatterAddRows(base!, indices!, updates!)],
  flops: (_, [, , updates], [out]) => product(updates!) + product(out!),
});
