import {
  activateBackend,
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  opParams,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { outputTensor, paramTensor } from '../../channel-axes.js';
import { BATCH } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { createOpContext } from '../../op-context.js';
import { embeddingOp } from './embedding.js';

const attrs = { inputDim: 5, outputDim: 3 };
/** Ids of shape [2, 3] with repeats: id 2 three times, id 0 twice; id 1 never. */
const idValues = [2, 0, 2, 4, 3, 2];

/** Gradient of `sum(embed(ids) * weights)` with respect to the table, through the op. */
function opTableGrad(table: tf.Tensor, ids: tf.Tensor, weights: tf.Tensor): tf.Tensor {
  const { context } = createOpContext({
    node: { name: 'embed', op: embeddingOp.type, inputs: [], outputs: [], attrs },
    attrs: resolveAttrs(embeddingOp, attrs, 'embed'),
    params: {},
    state: {},
    training: true,
    options: {},
    rows: { batchSize: 2, indices: Int32Array.of(0, 1) },
    seed: 0,
  });
  return tf.grad((t: tf.Tensor) => {
    const out = embeddingOp.forward({ ...context, params: { embeddings: t } }, [ids]) as tf.Tensor[];
    return tf.sum(tf.mul(out[0]!, weights));
  })(table);
}

describeEachBackend('core.Embedding', (backend) => {
  guardLeaks();

  it("matches tfjs-layers' Embedding, float32 ids included", async () => {
    const ids = tf.tensor(idValues, [2, 3], 'int32');
    const floatIds = tf.cast(ids, 'float32');
    const params = opParams(embeddingOp, attrs, [ids]);
    const layer = tfl.layers.embedding(attrs);
    tf.dispose(layer.apply(ids) as tf.Tensor);
    layer.setWeights([params.embeddings!]);
    const expected = layer.apply(ids) as tf.Tensor;
    for (const input of [ids, floatIds]) {
      const { outputs } = await runOp(embeddingOp, { attrs, inputs: [input], params });
      await expectClose(outputs[0]!, expected, { label: `Embedding (${input.dtype} ids)` });
      tf.dispose(outputs);
    }
    tf.dispose([ids, floatIds, expected, ...Object.values(params)]);
    layer.dispose();
  });

  it("has the gradient of cpu's native tf.gather, adding up repeated ids", async () => {
    const make = () => ({
      table: seededUniform([5, 3], { seed: 1 }),
      ids: tf.tensor(idValues, [2, 3], 'int32'),
      weights: seededUniform([2, 3, 3], { seed: 2 }),
    });
    await activateBackend('cpu');
    const ref = make();
    const nativeGrad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ref.ids), ref.weights)))(
      ref.table,
    );
    const expected = await nativeGrad.data();
    tf.dispose([nativeGrad, ...Object.values(ref)]);
    await activateBackend(backend);
    const here = make();
    const grad = opTableGrad(here.table, here.ids, here.weights);
    await expectClose(grad, expected, { label: 'embeddings gradient' });
    tf.dispose([grad, ...Object.values(here)]);
  });

  it('has finite-difference gradients for its embeddings', async () => {
    const ids = tf.tensor(idValues, [2, 3], 'int32');
    await checkOpGradients(embeddingOp, { attrs, inputs: [ids] }, { samples: 15 });
    ids.dispose();
  });
});

describe('core.Embedding shapes, params and FLOPs', () => {
  const resolved = resolveAttrs(embeddingOp, attrs, 'embed');

  it('appends outputDim to the ids shape and declares a Keras-initialised table', () => {
    const ids = { name: 'ids', dtype: 'int32' as const, shape: [BATCH, 'time'] };
    expect(embeddingOp.inferShape(resolved, [ids])).toEqual([
      { shape: [BATCH, 'time', 3], dtype: 'float32' },
    ]);
    expect(embeddingOp.params!(resolved, [ids])).toEqual([
      { name: 'embeddings', shape: [5, 3], init: { kind: 'uniform', min: -0.05, max: 0.05 } },
    ]);
  });

  it('rejects bool ids and a zero vocabulary', () => {
    const ids = { name: 'ids', dtype: 'bool' as const, shape: [BATCH] };
    expect(() => embeddingOp.inferShape(resolved, [ids])).toThrow(/int32 ids, got bool\[batch\]/);
    expect(() => resolveAttrs(embeddingOp, { inputDim: 0, outputDim: 3 }, 'embed')).toThrow(/minimum 1/);
  });

  it('looks up without arithmetic', () => {
    expect(embeddingOp.flops(resolved, [[2, 3]], [[2, 3, 3]])).toBe(0);
  });
});

describe('core.Embedding channels', () => {
  const resolved = resolveAttrs(embeddingOp, attrs, 'embed');
  const ids = { name: 'ids', dtype: 'int32' as const, shape: [BATCH, 'time'] };

  it('ties the table columns to the output features', () => {
    const y = { name: 'y', dtype: 'float32' as const, shape: [BATCH, 'time', 3] };
    expect(embeddingOp.channels!(resolved, [ids], [y])).toEqual({
      spaces: { features: 3 },
      axes: [
        { tensor: paramTensor('embeddings'), axis: 1, space: 'features' },
        { tensor: outputTensor(0), axis: 2, space: 'features' },
      ],
    });
  });

  it('resizes outputDim so that the output and the table shrink', () => {
    const y = { name: 'y', dtype: 'float32' as const, shape: [BATCH, 'time', 2] };
    const resized = embeddingOp.resize!(resolved, [ids], [y], { features: 2 });
    expect(embeddingOp.inferShape(resized, [ids])[0]!.shape).toEqual([BATCH, 'time', 2]);
    expect(embeddingOp.params!(resized, [ids]).map((p) => p.shape)).toEqual([[5, 2]]);
  });
});
