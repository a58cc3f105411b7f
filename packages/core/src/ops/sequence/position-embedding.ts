import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import type { Dim, ValueInfo } from '../../ir.js';
import { defineOp } from '../../op.js';
import { formatShape, product } from '../basic/shape-helpers.js';

/** Attributes of {@link positionEmbedding}. */
export type PositionEmbeddingAttrs = {
  maxLength: number;
};

/** Checks a [batch, time, features] float32 input; returns its time dimension and feature size. */
function sequenceOf(x: ValueInfo, maxLength: number): { time: Dim; features: number } {
  const [, time, features] = x.shape;
  if (x.shape.length !== 3 || typeof features !== 'number') {
    throw new Error(
      `PositionEmbedding needs a sequence [batch, time, features] with a known feature size, got ${formatShape(x.shape)}`,
    );
  }
  if (x.dtype !== 'float32') throw new Error(`PositionEmbedding needs a float32 input, got ${x.dtype}`);
  if (typeof time === 'number' && time > maxLength) {
    throw new Error(`the sequence has ${time} positions but maxLength is ${maxLength}; raise maxLength`);
  }
  return { time: time!, features };
}

/**
 * `core.PositionEmbedding`: adds a learned vector per position to a sequence, `x[b, t] +
 * embeddings[t]` (GPT-style learned absolute positions). Input and output `[batch, time, d]` with
 * `time <= maxLength`. Param: `embeddings` [maxLength, d], uniform in [-0.05, 0.05] like
 * `core.Embedding`'s table, so neither dominates the other at the start of training. Its gradient
 * is a slice's and a broadcast add's: no gather, so it trains on wasm.
 *
 * In a session (`model.session()`), positions continue from where the earlier runs stopped.
 *
 * Channels: space `features` (the input's and the output's last axis, `embeddings` axis 1).
 * Positions are not channels: removing one would shift the positions after it.
 */
export const positionEmbedding = defineOp<PositionEmbeddingAttrs>({
  type: 'core.PositionEmbedding',
  version: 1,
  description: 'Adds a learned embedding of each position to a sequence: x[b, t] + embeddings[t].',
  attrs: {
    maxLength: { kind: 'int', min: 1, doc: 'longest sequence: positions 0..maxLength-1 have a vector' },
  },
  inputs: { min: 1 },
  params(attrs, [x]) {
    const { features } = sequenceOf(x!, attrs.maxLength);
    return [
      {
        name: 'embeddings',
        shape: [attrs.maxLength, features],
        init: { kind: 'uniform', min: -0.05, max: 0.05 },
      },
    ];
  },
  inferShape(attrs, [x]) {
    sequenceOf(x!, attrs.maxLength);
    return [{ shape: x!.shape, dtype: 'float32' }];
  },
  channels(attrs, [x]) {
    const { features } = sequenceOf(x!, attrs.maxLength);
    return {
      spaces: { features },
      axes: [
        { tensor: inputTensor(0), axis: 2, space: 'features' },
        { tensor: outputTensor(0), axis: 2, space: 'features' },
        { tensor: paramTensor('embeddings'), axis: 1, space: 'features' },
      ],
    };
  },
  sessionState: () => [{ name: 'offset', kind: 'number' }],
  forward(ctx, [x]) {
    const [, time, features] = x!.shape as [number, number, number];
    const { maxLength } = ctx.attrs;
    // In a session the positions continue from the earlier runs' (incremental decoding).
    const offset = (ctx.session?.read('offset') as number | undefined) ?? 0;
    if (offset + time > maxLength) {
      throw new Error(
        offset === 0
          ? `the sequence has ${time} positions but maxLength is ${maxLength}; raise maxLength`
          : `the session reached position ${offset + time} but maxLength is ${maxLength}; reset the session or raise maxLength`,
      );
    }
    ctx.session?.write('offset', offset + time);
    const table = ctx.params.embeddings!;
    return [
      tf.tidy(() =>
        tf.add(
          x!,
          offset === 0 && time === maxLength ? table : tf.slice(table, [offset, 0], [time, features]),
        ),
      ),
    ];
  },
  // One addition per element.
  flops: (_, [x]) => product(x!),
});
