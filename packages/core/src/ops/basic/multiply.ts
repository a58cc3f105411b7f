import * as tf from '@tensorflow/tfjs-core';
import { elementwiseChannels } from '../../channel-axes.js';
import { defineOp } from '../../op.js';
import { foldInputs, inferElementwise } from './broadcast.js';
import { product } from './shape-helpers.js';

/**
 * `core.Multiply`: the elementwise product of 2+ inputs, with numpy broadcasting (gates, masks).
 * Channels: each non-batch axis of the output tied to the same axis of every input that has it at
 * full size (a broadcast axis holds none), so a residual connection couples its branches.
 */
export const multiplyOp = defineOp({
  type: 'core.Multiply',
  version: 1,
  description: 'Multiplies two or more inputs elementwise, broadcasting their shapes like numpy.',
  attrs: {},
  inputs: { min: 2, max: Number.POSITIVE_INFINITY },
  inferShape: (_, inputs) => inferElementwise('Multiply', inputs),
  channels: (_, inputs, outputs) => elementwiseChannels(inputs, outputs),
  forward: (_, inputs) => [tf.tidy(() => foldInputs(inputs, tf.mul))],
  flops: (_, inputs, [y]) => (inputs.length - 1) * product(y!),
});
