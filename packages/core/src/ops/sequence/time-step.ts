import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, type OpChannels, outputTensor } from '../../channel-axes.js';
import type { ValueInfo } from '../../ir.js';
import { defineOp } from '../../op.js';
import { formatShape } from '../basic/shape-helpers.js';

/** Attributes of {@link timeStep}. */
export type TimeStepAttrs = {
  index: number;
};

/** Checks a [batch, time, ...] input and that `index` lies inside a known time dimension. */
function checkSequence(x: ValueInfo, index: number): void {
  if (x.shape.length < 3) {
    throw new Error(`TimeStep needs a sequence [batch, time, ...features], got ${formatShape(x.shape)}`);
  }
  const time = x.shape[1];
  if (typeof time === 'number' && (index >= time || index < -time)) {
    throw new Error(`index ${index} is outside a sequence of ${time} positions`);
  }
}

/**
 * `core.TimeStep`: one position of a sequence, `x[:, index]`: `[batch, time, ...f]` to
 * `[batch, ...f]`. A negative `index` counts from the end (`-1`, the default, is the last
 * position: what a causal language model predicts the next token from). Its gradient is a
 * slice's (a pad), which every backend has.
 *
 * Channels: each numeric feature axis of the input (axis k >= 2) tied to the output's axis k - 1.
 */
export const timeStep = defineOp<TimeStepAttrs>({
  type: 'core.TimeStep',
  version: 1,
  description: 'Takes one position of a sequence: [batch, time, ...f] -> [batch, ...f].',
  attrs: {
    index: {
      kind: 'int',
      default: -1,
      doc: 'the position taken; negative counts from the end (-1: the last)',
    },
  },
  inputs: { min: 1 },
  inferShape(attrs, [x]) {
    checkSequence(x!, attrs.index);
    return [{ shape: [x!.shape[0]!, ...x!.shape.slice(2)], dtype: x!.dtype }];
  },
  channels(_, [x]) {
    const channels: OpChannels = { spaces: {}, axes: [] };
    for (let axis = 1; axis < x!.shape.length - 1; axis++) {
      const size = x!.shape[axis + 1];
      if (typeof size !== 'number') continue;
      const space = `axis${axis}`;
      channels.spaces[space] = size;
      channels.axes.push(
        { tensor: inputTensor(0), axis: axis + 1, space },
        { tensor: outputTensor(0), axis, space },
      );
    }
    return channels;
  },
  forward(ctx, [x]) {
    const time = x!.shape[1]!;
    const { index } = ctx.attrs;
    if (index >= time || index < -time) {
      throw new Error(`index ${index} is outside a sequence of ${time} positions`);
    }
    const at = index < 0 ? time + index : index;
    return [
      tf.tidy(() => {
        const begin = x!.shape.map((_, axis) => (axis === 1 ? at : 0));
        const size = x!.shape.map((d, axis) => (axis === 1 ? 1 : d));
        return tf.reshape(tf.slice(x!, begin, size), [x!.shape[0]!, ...x!.shape.slice(2)]);
      }),
    ];
  },
  // A copy: no arithmetic.
  flops: () => 0,
});
