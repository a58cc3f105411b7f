import * as tf from '@tensorflow/tfjs-core';
import { type ChannelAxis, inputTensor, type OpChannels, outputTensor } from '../../channel-axes.js';
import type { Dim } from '../../ir.js';
import { defineOp } from '../../op.js';
import { formatShape, normalizeAxis } from './shape-helpers.js';

/** Attributes of {@link concatOp}. */
export type ConcatAttrs = { axis: number };

/**
 * `core.Concat`: joins 2+ inputs along one axis (Keras' Concatenate).
 *
 * Channels: one space per non-batch numeric axis of the output. Along the joined axis each input
 * holds a run of the output's channels, from the sum of the sizes before it; every other axis is
 * tied across the inputs and the output, as an elementwise op's.
 */
export const concatOp = defineOp<ConcatAttrs>({
  type: 'core.Concat',
  version: 1,
  description: 'Concatenates two or more inputs along an axis; the other dimensions must match.',
  attrs: { axis: { kind: 'int', default: -1, doc: 'axis to join along (negative counts from the end)' } },
  inputs: { min: 2, max: Number.POSITIVE_INFINITY },
  inferShape(attrs, inputs) {
    const first = inputs[0]!;
    const rank = first.shape.length;
    const axis = normalizeAxis(attrs.axis, rank, 'Concat axis');
    const shapes = inputs.map((x) => formatShape(x.shape)).join(', ');
    const out: Dim[] = [...first.shape];
    let joined = 0;
    for (const x of inputs) {
      if (x.dtype !== first.dtype) {
        throw new Error(`Concat needs inputs of one dtype, got ${first.dtype} and ${x.dtype}`);
      }
      const mismatch = x.shape.length !== rank || x.shape.some((d, i) => i !== axis && d !== first.shape[i]);
      if (mismatch) throw new Error(`Concat on axis ${attrs.axis}: shapes ${shapes} differ off that axis`);
      const size = x.shape[axis];
      if (typeof size !== 'number') {
        throw new Error(`Concat cannot join along the symbolic dimension '${size}' (shapes ${shapes})`);
      }
      joined += size;
    }
    out[axis] = joined;
    return [{ shape: out, dtype: first.dtype }];
  },
  channels(attrs, inputs, [y]) {
    const rank = y!.shape.length;
    const joinedAxis = normalizeAxis(attrs.axis, rank);
    const channels: OpChannels = { spaces: {}, axes: [] };
    for (let axis = 1; axis < rank; axis++) {
      const size = y!.shape[axis];
      if (typeof size !== 'number') continue;
      const space = `axis${axis}`;
      channels.spaces[space] = size;
      channels.axes.push({ tensor: outputTensor(0), axis, space });
      let offset = 0;
      inputs.forEach((x, index) => {
        const entry: ChannelAxis = { tensor: inputTensor(index), axis, space };
        if (axis === joinedAxis) {
          channels.axes.push({ ...entry, offset });
          offset += x.shape[axis] as number;
        } else {
          channels.axes.push(entry);
        }
      });
    }
    return channels;
  },
  forward: (ctx, inputs) => [tf.concat(inputs, normalizeAxis(ctx.attrs.axis, inputs[0]!.rank))],
  // Data movement only: no arithmetic.
  flops: () => 0,
});
