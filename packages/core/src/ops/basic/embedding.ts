import * as tf from '@tensorflow/tfjs-core';
import { outputTensor, paramTensor } from '../../channel-axes.js';
import { defineOp } from '../../op.js';
import { gatherRows } from './gather-rows.js';
import { formatShape } from './shape-helpers.js';

/** Attributes of {@link embeddingOp}. */
export type EmbeddingAttrs = {
  inputDim: number;
  outputDim: number;
};

/**
 * `core.Embedding`: maps integer ids in `[0, inputDim)` to learned vectors (Keras' Embedding).
 * Input: ids of any shape (int32; float32 ids are truncated to integers, as Keras casts them).
 * Output: `[...ids.shape, outputDim]`. Param: `embeddings` [inputDim, outputDim], uniform in
 * [-0.05, 0.05] like Keras. Its gradient works on wasm (see {@link gatherRows}).
 *
 * Channels: space `features` (`embeddings` axis 1, the output's last axis); the ids are values,
 * not channels. Resizing sets `outputDim`.
 */
export const embeddingOp = defineOp<EmbeddingAttrs>({
  type: 'core.Embedding',
  version: 1,
  description: 'Looks up a learned vector for each integer id: [...ids] -> [...ids, outputDim].',
  attrs: {
    inputDim: { kind: 'int', min: 1, doc: 'vocabulary size: ids lie in [0, inputDim)' },
    outputDim: { kind: 'int', min: 1, doc: 'size of each embedding vector' },
  },
  inputs: { min: 1 },
  params: (attrs) => [
    {
      name: 'embeddings',
      shape: [attrs.inputDim, attrs.outputDim],
      init: { kind: 'uniform', min: -0.05, max: 0.05 },
    },
  ],
  inferShape(attrs, [ids]) {
    if (ids!.dtype === 'bool') {
      throw new Error(`Embedding needs int32 ids, got bool${formatShape(ids!.shape)}`);
    }
    return [{ shape: [...ids!.shape, attrs.outputDim], dtype: 'float32' }];
  },
  channels: (attrs, _, [y]) => ({
    spaces: { features: attrs.outputDim },
    axes: [
      { tensor: paramTensor('embeddings'), axis: 1, space: 'features' },
      // Ids without a batch axis give [outputDim], whose axis 0 is no channel axis.
      ...(y!.shape.length >= 2
        ? [{ tensor: outputTensor(0), axis: y!.shape.length - 1, space: 'features' }]
        : []),
    ],
  }),
  resize: (attrs, _, [y]) => ({ ...attrs, outputDim: y!.shape[y!.shape.length - 1] as number }),
  forward(ctx, [ids]) {
    const table = ctx.params.embeddings!;
    if (ids!.dtype === 'int32') return [gatherRows(table, ids!)];
    return [tf.tidy(() => gatherRows(table, tf.cast(ids!, 'int32')))];
  },
  // A lookup: no arithmetic.
  flops: () => 0,
});
