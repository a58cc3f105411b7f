import * as tf from '@tensorflow/tfjs-core';
import type { Attrs, Dim } from '../../ir.js';
import { defineOp } from '../../op.js';
import { passThroughChannels, poolInput } from './conv-attrs.js';
import type { SpatialPadding } from './conv-geometry.js';

/** Resolved attributes of {@link zeroPadding2dOp}. */
export interface ZeroPadding2DAttrs extends Attrs {
  padding: number[];
}

/**
 * Reads `padding` as `[top, bottom, left, right]`: one value pads every side, two are
 * `[vertical, horizontal]` (both sides of each axis, as Keras' `(1, 1)` form), four are explicit.
 */
export function zeroPaddingAmounts(padding: readonly number[]): SpatialPadding {
  switch (padding.length) {
    case 1:
      return { top: padding[0]!, bottom: padding[0]!, left: padding[0]!, right: padding[0]! };
    case 2:
      return { top: padding[0]!, bottom: padding[0]!, left: padding[1]!, right: padding[1]! };
    case 4:
      return { top: padding[0]!, bottom: padding[1]!, left: padding[2]!, right: padding[3]! };
    default:
      throw new Error(
        `attribute 'padding' must hold 1, 2 or 4 values ([top, bottom, left, right]), got ${padding.length}: [${padding}]`,
      );
  }
}

function grown(size: Dim, extra: number): Dim {
  if (extra === 0) return size;
  return typeof size === 'number' ? size + extra : `${size}+${extra}`;
}

/**
 * `core.ZeroPadding2D`: adds rows and columns of zeros around NHWC images, like Keras
 * `ZeroPadding2D`.
 *
 * - attrs: `padding` ([1, 1, 1, 1]: `[top, bottom, left, right]`; 1 or 2 values as in Keras)
 * - input: `[batch, height, width, channels]`; output: `[batch, height + top + bottom, width + left + right, channels]`
 * - channels: one space `c`, input axis 3 tied to output axis 3
 */
export const zeroPadding2dOp = defineOp<ZeroPadding2DAttrs>({
  type: 'core.ZeroPadding2D',
  version: 1,
  description: 'Adds rows and columns of zeros around NHWC images (Keras ZeroPadding2D).',
  attrs: {
    padding: {
      kind: 'ints',
      min: 0,
      default: [1, 1, 1, 1],
      doc: 'zeros added [top, bottom, left, right] (1 value: every side; 2: [vertical, horizontal])',
    },
  },
  inputs: { min: 1 },
  inferShape(attrs, inputs) {
    const image = poolInput(inputs);
    const { top, bottom, left, right } = zeroPaddingAmounts(attrs.padding);
    return [
      {
        shape: [
          image.batch,
          grown(image.height, top + bottom),
          grown(image.width, left + right),
          image.channels,
        ],
        dtype: 'float32',
      },
    ];
  },
  channels: (_attrs, inputs, outputs) => passThroughChannels(inputs, outputs),
  forward(ctx, [x]) {
    const { top, bottom, left, right } = zeroPaddingAmounts(ctx.attrs.padding);
    return [
      tf.pad(x!, [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, 0],
      ]),
    ];
  },
  flops: () => 0,
});
