import { type Graph, GraphBuilder, type Runtime } from '@dynn/core';
import { addSparseAttention } from '@dynn/sparse-attention';

/** Width of the sparse-attention example's model, and its transformer blocks. */
export const MODEL_WIDTH = 64;
export const MODEL_LAYERS = 2;

/**
 * The sparse-attention example's causal character model: characters embedded in
 * {@link MODEL_WIDTH} features, {@link MODEL_LAYERS} pre-norm blocks of a
 * `sparse-attention.SparseAttention` layer (4 heads of 16: the first 2 on a causal sliding window
 * of 32 characters with ALiBi distances, in blocks of 16; the last 2 routing heads, 4 clusters,
 * causal windows of 16 characters) and a relu MLP of twice the width, then a head over the
 * `vocab` characters. No position embedding, so it runs on any length and decodes in a session
 * without a position limit. `train-sparse-attention-model.ts` trains it; the tests build it
 * untrained.
 */
export function sparseCharGraph(runtime: Runtime, vocab: number): Graph {
  const b = new GraphBuilder(runtime);
  const chars = b.input('chars', 'int32', ['batch', 'time']);
  let h = b.add('core.Embedding', chars, { inputDim: vocab, outputDim: MODEL_WIDTH }, { name: 'embed' });
  for (let k = 1; k <= MODEL_LAYERS; k++) {
    const normed = b.add('core.LayerNorm', h, {}, { name: `block${k}/norm1` });
    const attended = addSparseAttention(b, normed, {
      name: `block${k}/attention`,
      numHeads: 4,
      keyDim: 16,
      blockSize: 16,
      pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 31, after: 0 }] },
      scoreMods: [{ type: 'alibi' }],
      routing: { heads: 2, clusters: 4, window: 16, causal: true, decay: 0.99, commitment: 1e-4 },
    });
    h = b.add('core.Add', [h, attended], {}, { name: `block${k}/residual1` });
    const normed2 = b.add('core.LayerNorm', h, {}, { name: `block${k}/norm2` });
    const hidden = b.add(
      'core.Dense',
      normed2,
      { units: 2 * MODEL_WIDTH, activation: 'relu' },
      { name: `block${k}/mlp1` },
    );
    const mlp = b.add('core.Dense', hidden, { units: MODEL_WIDTH }, { name: `block${k}/mlp2` });
    h = b.add('core.Add', [h, mlp], {}, { name: `block${k}` });
  }
  h = b.add('core.LayerNorm', h, {}, { name: 'norm' });
  return b.build({ logits: b.add('core.Dense', h, { units: vocab }, { name: 'head' }) });
}
