import * as tf from '@tensorflow/tfjs-core';
import { elementwiseChannels } from '../../channel-axes.js';
import { defineOp } from '../../op.js';
import { foldInputs, inferElementwise } from './broadcast.js';
import { product } from './shape-helpers.js';

/**
 * `core.Add`: the elementwise sum of 2+ inputs, with numpy broadcasting (residual connections).
 * Channels: each non-batch axis of the output tied to the same axis of every input that has it at
 * full size (a broadcast axis holds none), so a residual connection couples its branches.
 */
export const addOp = defineOp({
  type: 'core.Add',
  version: 1,
  description: 'Sums two or more inputs elementwise, broadcasting their shapes like numpy.',
  attrs: {},
  inputs: { min: 2, max: Number.POSITIVE_INFINITY },
  inferShape: (_, inputs) => inferElementwise('Add', inputs),
  channels: (_, inputs, outputs) => elementwiseChannels(inputs, outputs),
  forward: (_, inputs) => [tf.tidy(() => foldInputs(inputs, tf.add))],
  flops: (_, inputs, [y]) => (inputs.length - 1) * product(y!),
});
