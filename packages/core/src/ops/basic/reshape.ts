import * as tf from '@tensorflow/tfjs-core';
import {
  type ChannelAxis,
  type ChannelTensor,
  inputTensor,
  type OpChannels,
  outputTensor,
} from '../../channel-axes.js';
import type { Dim } from '../../ir.js';
import { defineOp } from '../../op.js';
import { formatShape, product } from './shape-helpers.js';

/** Attributes of {@link reshapeOp}. */
export type ReshapeAttrs = { shape: number[] };

/** Checks a target shape: sizes >= 1 and at most one -1. Returns the position of the -1 (or -1). */
function inferredAxis(target: readonly number[]): number {
  if (target.some((d) => d === 0 || d < -1)) {
    throw new Error(`Reshape target ${formatShape(target)} may hold sizes >= 1 and one -1 only`);
  }
  const free = target.indexOf(-1);
  if (free !== target.lastIndexOf(-1)) {
    throw new Error(`Reshape target ${formatShape(target)} has more than one -1`);
  }
  return free;
}

/** The size of the last axis when it can hold channels: a number, not the batch axis. */
function lastChannelSize(shape: readonly Dim[]): number | undefined {
  const size = shape[shape.length - 1];
  return shape.length >= 2 && typeof size === 'number' ? size : undefined;
}

/**
 * `core.Reshape`: gives each row a new shape, like Keras' Reshape: `shape` excludes the batch
 * dimension, which is kept; one entry may be -1 (inferred from the row size).
 *
 * Channels: the last axes, when the smaller divides the larger (equal, flattened `[h, w, c] ->
 * [h * w * c]`, split `[t, heads * d] -> [t, heads, d]`): a space the size of the smaller, which
 * the larger holds with that `period`. Any other reshape maps nothing (a barrier). Resizing
 * rewrites `shape` from the new output, keeping its -1.
 */
export const reshapeOp = defineOp<ReshapeAttrs>({
  type: 'core.Reshape',
  version: 1,
  description: 'Reshapes each row (the batch dimension is kept) to a target shape; one -1 is inferred.',
  attrs: {
    shape: { kind: 'ints', min: -1, doc: 'target shape without the batch dimension; one -1 allowed' },
  },
  inputs: { min: 1 },
  inferShape(attrs, [x]) {
    const target = attrs.shape;
    const free = inferredAxis(target);
    if (x!.shape.length < 1) throw new Error('Reshape needs an input with a batch dimension, got a scalar');
    const [batch, ...rest] = x!.shape;
    const known = product(target.filter((d) => d !== -1));
    const symbolic = rest.filter((d) => typeof d !== 'number');
    const rowSize = product(rest.filter((d): d is number => typeof d === 'number'));
    const out: Dim[] = [...target];
    if (symbolic.length === 0) {
      const inferred = rowSize / known;
      if (free >= 0 ? !Number.isInteger(inferred) : rowSize !== known) {
        throw new Error(
          `Reshape cannot turn rows of shape ${formatShape(rest)} (${rowSize} values) ` +
            `into ${formatShape(target)}`,
        );
      }
      if (free >= 0) out[free] = inferred;
    } else if (symbolic.length === 1 && free >= 0 && rowSize === known) {
      // [batch, time, 64] -> [-1, 8, 8]: the -1 is exactly the symbolic dimension.
      out[free] = symbolic[0]!;
    } else {
      throw new Error(
        `Reshape cannot map rows of shape ${formatShape(rest)} with symbolic dimensions ` +
          `to ${formatShape(target)}; use one -1 standing for exactly one symbolic dimension`,
      );
    }
    return [{ shape: [batch!, ...out], dtype: x!.dtype }];
  },
  channels(_, [x], [y]): OpChannels {
    const inSize = lastChannelSize(x!.shape);
    const outSize = lastChannelSize(y!.shape);
    if (inSize === undefined || outSize === undefined) return { spaces: {}, axes: [] };
    const size = Math.min(inSize, outSize);
    // Row-major order: when `size` divides the larger last axis, every row of that axis starts at
    // a multiple of `size` in the flat row, so its position j holds channel j % size.
    if (Math.max(inSize, outSize) % size !== 0) return { spaces: {}, axes: [] };
    const lastAxis = (tensor: ChannelTensor, shape: readonly Dim[], own: number): ChannelAxis => ({
      tensor,
      axis: shape.length - 1,
      space: 'features',
      ...(own > size ? { period: size } : {}),
    });
    return {
      spaces: { features: size },
      axes: [lastAxis(inputTensor(0), x!.shape, inSize), lastAxis(outputTensor(0), y!.shape, outSize)],
    };
  },
  resize(attrs, _, [y]) {
    const wanted = y!.shape.slice(1);
    return { ...attrs, shape: attrs.shape.map((d, i) => (d === -1 ? -1 : (wanted[i] as number))) };
  },
  forward(ctx, [x]) {
    const target = [...ctx.attrs.shape];
    const free = target.indexOf(-1);
    // The -1 is resolved here so that an empty batch (every row retired) reshapes too.
    if (free >= 0) target[free] = product(x!.shape.slice(1)) / product(target.filter((d) => d !== -1));
    return [tf.reshape(x!, [x!.shape[0]!, ...target])];
  },
  // Reinterprets the same values: no arithmetic.
  flops: () => 0,
});
