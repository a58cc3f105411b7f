import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { passThroughChannels } from './conv-attrs.js';
import { type Conv2DGeometry, conv2dGeometry } from './conv-geometry.js';
import { type PoolAttrs, poolAttrs, poolFlops, poolInferShape, poolWindow } from './pool-window.js';

/**
 * `[1, outHeight, outWidth, 1]`: window size over the number of its positions inside the image,
 * which turns a mean over a zero-padded window into a mean over its in-image positions.
 */
function borderCorrection(g: Conv2DGeometry): tf.Tensor4D {
  const inside = (out: number, stride: number, before: number, window: number, size: number) =>
    Float32Array.from({ length: out }, (_, i) => {
      const start = i * stride - before;
      return Math.min(start + window, size) - Math.max(start, 0);
    });
  const rows = inside(g.outHeight, g.strides[0], g.padding.top, g.kernelHeight, g.inHeight);
  const cols = inside(g.outWidth, g.strides[1], g.padding.left, g.kernelWidth, g.inWidth);
  const window = g.kernelHeight * g.kernelWidth;
  const values = new Float32Array(g.outHeight * g.outWidth);
  for (let i = 0; i < g.outHeight; i++) {
    for (let j = 0; j < g.outWidth; j++) values[i * g.outWidth + j] = window / (rows[i]! * cols[j]!);
  }
  return tf.tensor4d(values, [1, g.outHeight, g.outWidth, 1]);
}

/**
 * `core.AvgPool2D`: the mean over each window of an NHWC image, like Keras `AveragePooling2D`.
 *
 * - attrs: `poolSize` ([2, 2]), `strides` (null: the pool size), `padding` ('valid'; with
 *   'same', border windows average only the positions inside the image, as in TensorFlow)
 * - input: `[batch, height, width, channels]`; output: `[batch, outHeight, outWidth, channels]`
 * - channels: one space `c`, input axis 3 tied to output axis 3
 *
 * With 'same' padding it pools the explicitly zero-padded input ('valid') and rescales border
 * windows: tfjs 4.22's `AvgPoolGrad` divides by the whole window even where its forward pass
 * averaged fewer positions, so `tf.avgPool(x, ..., 'same')` has wrong gradients at the borders.
 */
export const avgPool2dOp = defineOp<PoolAttrs>({
  type: 'core.AvgPool2D',
  version: 1,
  description: 'Mean over each pooling window of an NHWC image (Keras AveragePooling2D).',
  attrs: poolAttrs,
  inputs: { min: 1 },
  inferShape: poolInferShape,
  channels: (_attrs, inputs, outputs) => passThroughChannels(inputs, outputs),
  forward(ctx, [x]) {
    const input = x as tf.Tensor4D;
    const { pool, options } = poolWindow(ctx.attrs);
    const g = conv2dGeometry(input.shape[1], input.shape[2], pool, options);
    const { top, bottom, left, right } = g.padding;
    if (top + bottom + left + right === 0) return [tf.avgPool(input, pool, options.strides, 'valid')];
    return [
      tf.tidy(() => {
        const padded = tf.pad(input, [
          [0, 0],
          [top, bottom],
          [left, right],
          [0, 0],
        ]);
        return tf.mul(tf.avgPool(padded, pool, options.strides, 'valid'), borderCorrection(g));
      }),
    ];
  },
  // One add per window element and one division per output.
  flops: (attrs, _inputs, [output]) => poolFlops(attrs, output!, 1),
});
