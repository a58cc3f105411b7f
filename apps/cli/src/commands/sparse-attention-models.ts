import { type Graph, GraphBuilder, type Runtime } from '@dynn/core';
import { addSparseAttention, type Pattern, type RoutingAttrs } from '@dynn/sparse-attention';

/**
 * How a model's attention layers attend: `full` is core's dense `core.MultiHeadAttention`;
 * `local` a sliding window of `sparse-attention.SparseAttention` in every head; `routing` the
 * same window in half the heads and routing attention (online k-means) in the other half.
 */
export type AttentionArm = 'full' | 'local' | 'routing';

/** The attention arms of the sparse-attention benches, dense first. */
export const ATTENTION_ARMS: readonly AttentionArm[] = ['full', 'local', 'routing'];

/** A transformer of the sparse-attention benches. */
export interface SparseTransformerConfig {
  /** Distinct tokens. */
  vocab: number;
  /** Sequence length. */
  context: number;
  /** Width of the residual stream. */
  width: number;
  /** Transformer blocks. */
  layers: number;
  /** Attention heads per block (divides `width`); the routing arm routes in half of them. */
  heads: number;
  /** Causal (a language model) or bidirectional (an encoder). */
  causal: boolean;
  /** Positions a local head sees on each side it looks (causal: back only). */
  window: number;
  /** Keys per block of the local heads' plan. */
  blockSize: number;
  /** Routing heads' clusters. */
  clusters: number;
  /** Routing heads' tokens per window (causal routing) or per cluster (balanced top-w). */
  routingWindow: number;
  /**
   * Causal routing (nearest-centroid windows) rather than balanced top-w; defaults to `causal`.
   * An encoder that reads out at its last position may route causally: that position sees every
   * earlier token of its cluster's last windows, and every token is routed somewhere.
   */
  routingCausal?: boolean;
  /** Learned position embeddings (a language model) or none (the retrieval encoder). */
  positions: boolean;
}

/** The local heads' pattern: a sliding window, causal or on both sides. */
export function localPattern(config: Pick<SparseTransformerConfig, 'causal' | 'window'>): Pattern {
  return config.causal
    ? { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: config.window - 1, after: 0 }] }
    : { type: 'window', before: config.window, after: config.window };
}

/** The routing heads of the `routing` arm: half the heads, the Routing Transformer's defaults. */
export function routingHeads(config: SparseTransformerConfig): RoutingAttrs {
  return {
    heads: config.heads / 2,
    clusters: config.clusters,
    window: config.routingWindow,
    causal: config.routingCausal ?? config.causal,
    decay: 0.999,
    commitment: 1e-4,
  };
}

/** Adds one attention layer of `arm` reading `x` and returns its output. */
export function addAttention(
  b: GraphBuilder,
  x: string,
  config: SparseTransformerConfig,
  arm: AttentionArm,
  name: string,
): string {
  const keyDim = config.width / config.heads;
  if (arm === 'full') {
    return b.add(
      'core.MultiHeadAttention',
      [x, x],
      { numHeads: config.heads, keyDim, causal: config.causal },
      { name },
    );
  }
  return addSparseAttention(b, x, {
    numHeads: config.heads,
    keyDim,
    blockSize: config.blockSize,
    pattern: localPattern(config),
    routing: arm === 'routing' ? routingHeads(config) : null,
    name,
  });
}

/**
 * A pre-norm transformer (embedding, optional learned positions, `layers` blocks of attention and
 * a relu MLP of 4x the width, a final layer norm) with attention of `arm`. A causal model writes
 * `logits` at every position (a character language model); a bidirectional one at the last
 * position only (the retrieval task's answer).
 */
export function sparseTransformerGraph(
  runtime: Runtime,
  config: SparseTransformerConfig,
  arm: AttentionArm,
): Graph {
  const b = new GraphBuilder(runtime);
  const ids = b.input('tokens', 'int32', ['batch', config.context]);
  let h = b.add(
    'core.Embedding',
    ids,
    { inputDim: config.vocab, outputDim: config.width },
    { name: 'embed' },
  );
  if (config.positions)
    h = b.add('core.PositionEmbedding', h, { maxLength: config.context }, { name: 'pos' });
  for (let k = 1; k <= config.layers; k++) {
    const normed = b.add('core.LayerNorm', h, {}, { name: `block${k}/norm1` });
    const attended = addAttention(b, normed, config, arm, `block${k}/attn`);
    h = b.add('core.Add', [h, attended], {}, { name: `block${k}/residual1` });
    const normed2 = b.add('core.LayerNorm', h, {}, { name: `block${k}/norm2` });
    const hidden = b.add(
      'core.Dense',
      normed2,
      { units: 4 * config.width, activation: 'relu' },
      { name: `block${k}/mlp1` },
    );
    const mlp = b.add('core.Dense', hidden, { units: config.width }, { name: `block${k}/mlp2` });
    h = b.add('core.Add', [h, mlp], {}, { name: `block${k}` });
  }
  h = b.add('core.LayerNorm', h, {}, { name: 'norm' });
  if (!config.causal) h = b.add('core.TimeStep', h, { index: -1 }, { name: 'last' });
  return b.build({ logits: b.add('core.Dense', h, { units: config.vocab }, { name: 'head' }) });
}
