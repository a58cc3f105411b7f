import * as tf from '@tensorflow/tfjs-core';
import { withSavedGrad } from '../basic/saved-grad.js';

/** Swaps the last two axes of a rank-3 tensor. */
function swapLastAxes(t: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(t, [0, 2, 1]);
}

/**
 * Batched `a @ b` for `a` of shape [batch, m, k] and `b` of shape [batch, k, n], giving
 * [batch, m, n]. Forward and gradients are plain matMuls of explicitly transposed operands:
 * tfjs's own matMul gradient uses the `transposeA/transposeB` forms, which run 12-20x slower
 * on the wasm backend.
 */
export function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  return withSavedGrad(
    [a, b],
    [a, b],
    (x, y) => tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D),
    (dy, [as, bs]) => [
      tf.matMul(dy as tf.Tensor3D, swapLastAxes(bs as tf.Tensor3D)),
      tf.matMul(swapLastAxes(as as tf.Tensor3D), dy as tf.Tensor3D),
    ],
  ) as tf.Tensor3D;
}
