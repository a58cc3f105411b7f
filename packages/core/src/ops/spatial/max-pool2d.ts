import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { type PoolAttrs, poolAttrs, poolFlops, poolInferShape, poolWindow } from './pool-window.js';

/**
 * `core.MaxPool2D`: the maximum over each window of an NHWC image, like Keras `MaxPooling2D`.
 *
 * - attrs: `poolSize` ([2, 2]), `strides` (null: the pool size), `padding` ('valid'; 'same'
 *   windows ignore the padded positions)
 * - input: `[batch, height, width, channels]`; output: `[batch, outHeight, outWidth, channels]`
 *
 * Its gradient is tfjs's `MaxPoolGrad`, which every backend (wasm included) provides.
 */
export const maxPool2dOp = defineOp<PoolAttrs>({
  type: 'core.MaxPool2D',
  version: 1,
  description: 'Maximum over each pooling window of an NHWC image (Keras MaxPooling2D).',
  attrs: poolAttrs,
  inputs: { min: 1 },
  inferShape: poolInferShape,
  forward(ctx, [x]) {
    const { pool, options } = poolWindow(ctx.attrs);
    return [tf.maxPool(x as tf.Tensor4D, pool, options.strides, options.padding)];
  },
  flops: (attrs, _inputs, [output]) => poolFlops(attrs, output!),
});
