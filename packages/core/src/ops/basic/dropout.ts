import * as tf from '@tensorflow/tfjs-core';
import { elementwiseChannels } from '../../channel-axes.js';
import type { Dim } from '../../ir.js';
import { defineOp } from '../../op.js';
import type { Rng } from '../../random.js';
import { formatShape, product } from './shape-helpers.js';

/** Attributes of {@link dropoutOp}. */
export type DropoutAttrs = {
  rate: number;
  noiseShape: number[] | null;
};

/** Checks `noiseShape` against the input shape (entries: -1, 1 or the input's size). */
function checkNoiseShape(noiseShape: readonly number[], shape: readonly Dim[]): void {
  const fits =
    noiseShape.length === shape.length && noiseShape.every((d, i) => d === -1 || d === 1 || d === shape[i]);
  if (!fits) {
    throw new Error(
      `Dropout noiseShape ${formatShape(noiseShape)} does not fit the input ${formatShape(shape)}: ` +
        'give one entry per axis, each -1 (the input size), 1 (shared mask) or the input size',
    );
  }
}

/**
 * An inverted-dropout mask: each entry 0 with probability `rate`, else `1 / (1 - rate)`; entry `n`
 * (row-major) uses the `n`-th draw of `rng`, so masks are reproducible on every backend.
 */
export function dropoutMask(rng: Rng, rate: number, shape: number[]): tf.Tensor {
  const keptValue = 1 / (1 - rate);
  const values = new Float32Array(product(shape));
  for (let i = 0; i < values.length; i++) values[i] = rng.next() >= rate ? keptValue : 0;
  return tf.tensor(values, shape);
}

/**
 * `core.Dropout`: in training, zeroes each element with probability `rate` and scales the rest
 * by `1 / (1 - rate)` (inverted dropout, as Keras); in inference, passes its input through. The
 * mask comes from the node's seeded generator, so a training step is reproducible on every
 * backend. `noiseShape` shares one mask entry along its axes of size 1, like Keras' noise_shape
 * (-1 stands for Keras' None: the input's size).
 *
 * Channels: elementwise, every non-batch axis tied from input to output. Resizing rewrites the
 * `noiseShape` entries that spell out an input size.
 */
export const dropoutOp = defineOp<DropoutAttrs>({
  type: 'core.Dropout',
  version: 1,
  description: 'Randomly zeroes elements during training (inverted dropout); identity in inference.',
  attrs: {
    rate: { kind: 'float', min: 0, max: 1, doc: 'probability of dropping an element, in [0, 1)' },
    noiseShape: {
      kind: 'ints',
      default: null,
      min: -1,
      doc: 'mask shape, one entry per axis: -1 (the input size) or 1 (shared); null: the input shape',
    },
  },
  inputs: { min: 1 },
  inferShape(attrs, [x]) {
    if (attrs.rate >= 1) throw new Error(`Dropout rate must be below 1, got ${attrs.rate}`);
    if (x!.dtype !== 'float32') throw new Error(`Dropout needs a float32 input, got ${x!.dtype}`);
    if (attrs.noiseShape !== null) checkNoiseShape(attrs.noiseShape, x!.shape);
    return [{ shape: x!.shape, dtype: 'float32' }];
  },
  channels: (_, inputs, outputs) => elementwiseChannels(inputs, outputs),
  resize(attrs, [x]) {
    if (attrs.noiseShape === null) return attrs;
    // -1 and 1 do not depend on the input's size; any other entry is that size.
    const noiseShape = attrs.noiseShape.map((d, i) => (d === -1 || d === 1 ? d : (x!.shape[i] as number)));
    return { ...attrs, noiseShape };
  },
  forward(ctx, [x]) {
    const { rate, noiseShape } = ctx.attrs;
    if (!ctx.training || rate === 0) return [x!];
    const maskShape = noiseShape?.map((d, i) => (d === -1 ? x!.shape[i]! : d)) ?? x!.shape;
    return [tf.tidy(() => tf.mul(x!, dropoutMask(ctx.rng(), rate, maskShape)))];
  },
  // Counted as in inference, where it computes nothing.
  flops: () => 0,
});
