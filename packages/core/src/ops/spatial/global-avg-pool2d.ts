import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { product } from '../basic/shape-helpers.js';

import { passThroughChannels } from './conv-attrs.js';
import { type GlobalPoolAttrs, globalPoolAttrs, globalPoolInferShape } from './pool-window.js';

/**
 * `core.GlobalAvgPool2D`: the mean over all positions of an NHWC image, like Keras
 * `GlobalAveragePooling2D`.
 *
 * - attrs: `keepDims` (false)
 * - input: `[batch, height, width, channels]`; output: `[batch, channels]`
 *   (`[batch, 1, 1, channels]` with `keepDims`)
 * - channels: one space `c`, input axis 3 tied to the output's last axis
 */
export const globalAvgPool2dOp = defineOp<GlobalPoolAttrs>({
  type: 'core.GlobalAvgPool2D',
  version: 1,
  description: 'Mean over the spatial axes of an NHWC image (Keras GlobalAveragePooling2D).',
  attrs: globalPoolAttrs,
  inputs: { min: 1 },
  inferShape: globalPoolInferShape,
  channels: (_attrs, inputs, outputs) => passThroughChannels(inputs, outputs),
  forward: (ctx, [x]) => [tf.mean(x!, [1, 2], ctx.attrs.keepDims)],
  flops: (_attrs, [input]) => product(input!),
});
