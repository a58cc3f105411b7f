import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { formatShape, product } from './shape-helpers.js';

/** `core.Flatten`: keeps the batch dimension and flattens the rest into one (Keras' Flatten). */
export const flattenOp = defineOp({
  type: 'core.Flatten',
  version: 1,
  description: 'Flattens every dimension but the batch into one: [batch, a, b, c] -> [batch, a*b*c].',
  attrs: {},
  inputs: { min: 1 },
  inferShape(_, [x]) {
    const [batch, ...rest] = x!.shape;
    if (batch === undefined) throw new Error('Flatten needs an input with a batch dimension, got a scalar');
    if (rest.some((d) => typeof d !== 'number')) {
      throw new Error(`Flatten needs the non-batch dimensions to be numbers, got ${formatShape(x!.shape)}`);
    }
    return [{ shape: [batch, product(rest as number[])], dtype: x!.dtype }];
  },
  forward: (_, [x]) => [tf.reshape(x!, [x!.shape[0]!, product(x!.shape.slice(1))])],
  // Reinterprets the same values: no arithmetic.
  flops: () => 0,
});
