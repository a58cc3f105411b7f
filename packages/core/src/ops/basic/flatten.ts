import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, type OpChannels, outputTensor } from '../../channel-axes.js';
import { defineOp } from '../../op.js';
import { formatShape, product } from './shape-helpers.js';

/**
 * `core.Flatten`: keeps the batch dimension and flattens the rest into one (Keras' Flatten).
 * Channels: those of the input's last axis, C of them; position j of the output holds channel
 * j % C (row-major order), the other input axes being a barrier.
 */
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
  channels(_, [x]): OpChannels {
    const rank = x!.shape.length;
    if (rank < 2) return { spaces: {}, axes: [] };
    const features = x!.shape[rank - 1] as number;
    return {
      spaces: { features },
      axes: [
        { tensor: inputTensor(0), axis: rank - 1, space: 'features' },
        { tensor: outputTensor(0), axis: 1, space: 'features', period: features },
      ],
    };
  },
  forward: (_, [x]) => [tf.reshape(x!, [x!.shape[0]!, product(x!.shape.slice(1))])],
  // Reinterprets the same values: no arithmetic.
  flops: () => 0,
});
