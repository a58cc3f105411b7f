import * as tf from '@tensorflow/tfjs-core';
import {
  type ChannelAxis,
  inputTensor,
  type OpChannels,
  outputTensor,
  paramTensor,
} from '../../channel-axes.js';
import type { ValueInfo } from '../../ir.js';
import { defineOp, type ParamSpec } from '../../op.js';
import { formatShape, normalizeAxis, product } from './shape-helpers.js';

/** Attributes of {@link layerNormOp}. */
export type LayerNormAttrs = {
  axis: number[];
  epsilon: number;
  center: boolean;
  scale: boolean;
};

/** The normalised axes, non-negative and ascending; throws on an empty, repeated or bad axis list. */
function normalizedAxes(axis: readonly number[], rank: number): number[] {
  const axes = axis.map((a) => normalizeAxis(a, rank, 'LayerNorm axis'));
  if (axes.length === 0 || new Set(axes).size !== axes.length) {
    throw new Error(`LayerNorm axis ${formatShape(axis)} must name one or more distinct axes`);
  }
  return axes.sort((a, b) => a - b);
}

/** The shape of gamma and beta: the input's sizes on the normalised axes, in ascending axis order. */
function paramShape(attrs: LayerNormAttrs, x: ValueInfo): number[] {
  return normalizedAxes(attrs.axis, x.shape.length).map((axis) => {
    const size = x.shape[axis];
    if (typeof size !== 'number') {
      throw new Error(
        `LayerNorm cannot normalise over the symbolic dimension '${size}' of ${formatShape(x.shape)}`,
      );
    }
    return size;
  });
}

/**
 * `core.LayerNorm`: normalises each sample over `axis` to zero mean and unit variance, then
 * scales by `gamma` and shifts by `beta` (Keras' LayerNormalization). Params: `gamma` (ones, when
 * `scale`) and `beta` (zeros, when `center`), shaped like the input on the normalised axes.
 *
 * Channels: one space per non-batch numeric axis, tied from input to output; on a normalised axis
 * also to `gamma` and `beta`, and marked as mixing, since the mean and variance cover every
 * channel of it.
 */
export const layerNormOp = defineOp<LayerNormAttrs>({
  type: 'core.LayerNorm',
  version: 1,
  description: 'Layer normalisation over the given axes, with a learned scale (gamma) and shift (beta).',
  attrs: {
    axis: { kind: 'ints', default: [-1], doc: 'axes normalised over (negative counts from the end)' },
    epsilon: { kind: 'float', default: 1e-3, min: 0, doc: 'added to the variance' },
    center: { kind: 'bool', default: true, doc: 'adds the learned offset beta' },
    scale: { kind: 'bool', default: true, doc: 'multiplies by the learned scale gamma' },
  },
  inputs: { min: 1 },
  params(attrs, [x]) {
    const shape = paramShape(attrs, x!);
    const specs: ParamSpec[] = [];
    if (attrs.scale) specs.push({ name: 'gamma', shape, init: { kind: 'ones' } });
    if (attrs.center) specs.push({ name: 'beta', shape, init: { kind: 'zeros' } });
    return specs;
  },
  inferShape(attrs, [x]) {
    if (x!.dtype !== 'float32') throw new Error(`LayerNorm needs a float32 input, got ${x!.dtype}`);
    paramShape(attrs, x!);
    return [{ shape: x!.shape, dtype: 'float32' }];
  },
  channels(attrs, [x]) {
    const normalized = normalizedAxes(attrs.axis, x!.shape.length);
    const params = [...(attrs.scale ? ['gamma'] : []), ...(attrs.center ? ['beta'] : [])];
    const channels: OpChannels = { spaces: {}, axes: [] };
    for (let axis = 1; axis < x!.shape.length; axis++) {
      const size = x!.shape[axis];
      if (typeof size !== 'number') continue;
      const space = `axis${axis}`;
      // gamma and beta hold the normalised axes in ascending order.
      const paramAxis = normalized.indexOf(axis);
      const mixes = paramAxis >= 0 ? { mixes: true } : {};
      const tied: ChannelAxis[] = [
        { tensor: inputTensor(0), axis, space, ...mixes },
        { tensor: outputTensor(0), axis, space, ...mixes },
        ...(paramAxis >= 0
          ? params.map((name) => ({ tensor: paramTensor(name), axis: paramAxis, space, mixes: true }))
          : []),
      ];
      channels.spaces[space] = size;
      channels.axes.push(...tied);
    }
    return channels;
  },
  forward(ctx, [x]) {
    const { epsilon, center, scale } = ctx.attrs;
    const axes = normalizedAxes(ctx.attrs.axis, x!.rank);
    // gamma and beta broadcast over the axes that are not normalised.
    const broadcastShape = x!.shape.map((d, i) => (axes.includes(i) ? d : 1));
    return [
      tf.tidy(() => {
        const { mean, variance } = tf.moments(x!, axes, true);
        let y = tf.mul(tf.sub(x!, mean), tf.rsqrt(tf.add(variance, epsilon)));
        if (scale) y = tf.mul(y, tf.reshape(ctx.params.gamma!, broadcastShape));
        if (center) y = tf.add(y, tf.reshape(ctx.params.beta!, broadcastShape));
        return y;
      }),
    ];
  },
  // Per element: subtract the mean, square, two sums, normalise; plus the scale and shift.
  flops: (attrs, [x]) => product(x!) * (5 + (attrs.scale ? 1 : 0) + (attrs.center ? 1 : 0)),
});
