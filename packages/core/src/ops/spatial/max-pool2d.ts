import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { canFuse } from '../basic/activation.js';
import { withSavedGrad } from '../basic/saved-grad.js';
import { passThroughChannels } from './conv-attrs.js';
import { type PoolAttrs, poolAttrs, poolFlops, poolInferShape, poolWindow } from './pool-window.js';

/**
 * `core.MaxPool2D`: the maximum over each window of an NHWC image, like Keras `MaxPooling2D`.
 *
 * - attrs: `poolSize` ([2, 2]), `strides` (null: the pool size), `padding` ('valid'; 'same'
 *   windows ignore the padded positions)
 * - input: `[batch, height, width, channels]`; output: `[batch, outHeight, outWidth, channels]`
 * - channels: one space `c`, input axis 3 tied to output axis 3
 *
 * Its gradient is tfjs's `MaxPoolGrad`, except when recording gradients on wasm for windows that
 * tile the image exactly
 * (stride = pool size, sizes divisible): there wasm's `MaxPoolGrad` took a quarter of a CNN
 * training step, and {@link tiledMaxPool}'s elementwise gradient is about 4x faster.
 */
export const maxPool2dOp = defineOp<PoolAttrs>({
  type: 'core.MaxPool2D',
  version: 1,
  description: 'Maximum over each pooling window of an NHWC image (Keras MaxPooling2D).',
  attrs: poolAttrs,
  inputs: { min: 1 },
  inferShape: poolInferShape,
  channels: (_attrs, inputs, outputs) => passThroughChannels(inputs, outputs),
  forward(ctx, [x]) {
    const { pool, options } = poolWindow(ctx.attrs);
    const [, height, width] = x!.shape;
    const tiles =
      options.strides[0] === pool[0] &&
      options.strides[1] === pool[1] &&
      height! % pool[0] === 0 &&
      width! % pool[1] === 0;
    if (tiles && tf.getBackend() === 'wasm' && !canFuse(ctx.training))
      return [tiledMaxPool(x as tf.Tensor4D, pool)];
    return [tf.maxPool(x as tf.Tensor4D, pool, options.strides, options.padding)];
  },
  flops: (attrs, _inputs, [output]) => poolFlops(attrs, output!),
});

/** Repeats each pixel of `t` over a [ph, pw] block: [b, h, w, c] -> [b, h*ph, w*pw, c]. */
function upsample(t: tf.Tensor4D, [ph, pw]: readonly [number, number]): tf.Tensor4D {
  const [b, h, w, c] = t.shape;
  const blocks = tf.mul(tf.reshape(t, [b, h, 1, w, 1, c]), tf.ones([1, 1, ph, 1, pw, 1]));
  return tf.reshape(blocks, [b, h * ph, w * pw, c]);
}

/**
 * Max pooling over windows that tile the image (stride = pool size, no padding needed), with an
 * elementwise gradient: `dx = upsample(dy) * (x == upsample(y))`. Where several positions of a
 * window tie for the maximum each receives the gradient (tfjs's `MaxPoolGrad` picks one); after a
 * ReLU, ties are zeros whose gradient the ReLU stops anyway.
 */
export function tiledMaxPool(x: tf.Tensor4D, pool: readonly [number, number]): tf.Tensor4D {
  const y = tf.maxPool(x, [pool[0], pool[1]], [pool[0], pool[1]], 'valid');
  const out = withSavedGrad(
    [x],
    [x, y],
    () => tf.clone(y),
    (dy, [xs, ys]) => [
      tf.tidy(() =>
        tf.mul(
          upsample(dy as tf.Tensor4D, pool),
          tf.cast(tf.equal(xs!, upsample(ys as tf.Tensor4D, pool)), 'float32'),
        ),
      ),
    ],
  ) as tf.Tensor4D;
  y.dispose();
  return out;
}
