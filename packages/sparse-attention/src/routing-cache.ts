import { batchMatMul, DynnError, gatherRows } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { MASKED_SCORE } from './routing-attention.js';

/** The size of a {@link RoutingCache}. */
export interface RoutingCacheConfig {
  /** Rows: `batch * heads` (one per sequence and routing head). */
  rows: number;
  /** Centroids per head. */
  clusters: number;
  /** Tokens per window, `w` (the routing attribute). */
  window: number;
}

/** What {@link RoutingCache.appendTokens} says about the tokens it appended. */
export interface RoutingStep {
  /** Rows, as the cache's. */
  rows: number;
  /** Tokens appended to every row. */
  tokens: number;
  /** Position of the first appended token (the positions seen before). */
  start: number;
  /** Positions seen after the append: the length the keys and values must have. */
  length: number;
  /** Slots per token in `positions`: `2 * window` (the previous window, the own one up to itself). */
  keys: number;
  /**
   * `[rows, tokens, keys]` positions each appended token attends to, ascending, itself last;
   * unused slots hold -1.
   */
  positions: Int32Array;
  /** `[rows, tokens]`: how many positions each appended token attends to. */
  counts: Int32Array;
}

/** Leading numbers of {@link RoutingCache.toArray}: rows, clusters, window, length. */
const HEADER = 4;

function invalid(message: string): never {
  throw new DynnError('INVALID_INPUT', `RoutingCache: ${message}`);
}

function checkConfig({ rows, clusters, window }: RoutingCacheConfig): void {
  for (const [name, value] of [
    ['rows', rows],
    ['clusters', clusters],
    ['window', window],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) invalid(`${name} must be an integer >= 1, got ${value}.`);
  }
}

/**
 * What causal routing heads keep between decoding runs: per row (`batch * heads`) and cluster, the
 * number of tokens the cluster received so far, the positions of its last full window and those of
 * the window being filled. A token of rank `k` in its cluster falls into window `floor(k / w)` and
 * attends to the whole previous window and to its own window's tokens up to itself: exactly the
 * sets of the full causal plan (`planRouting`), so decoding one token (or a chunk) at a time gives
 * what a run over the whole sequence gives.
 *
 * The cache holds host numbers only. An op keeps it in its session as an int32 tensor of
 * {@link RoutingCache.toArray} (declare `sessionState` `{ kind: 'tensor', dtype: 'int32', shape:
 * ['routingCache'] }`): the decide step reads it back, rebuilds it with
 * {@link RoutingCache.fromArray}, appends the new tokens' assignments and returns the step and the
 * new array as its decision, and the forward writes that array (a decide step's own session
 * writes are dropped).
 */
export class RoutingCache {
  /** Rows: `batch * heads`. */
  readonly rows: number;
  /** Centroids per head. */
  readonly clusters: number;
  /** Tokens per window. */
  readonly window: number;
  private seen = 0;
  /** Tokens per (row, cluster) so far. */
  private readonly sizes: Int32Array;
  /** Positions of each (row, cluster)'s last full window, `window` each (-1: none yet). */
  private readonly previous: Int32Array;
  /** Positions of each (row, cluster)'s window being filled (its first `size % window` are set). */
  private readonly current: Int32Array;

  /** An empty cache: no position seen. */
  constructor(config: RoutingCacheConfig) {
    checkConfig(config);
    this.rows = config.rows;
    this.clusters = config.clusters;
    this.window = config.window;
    const slots = this.rows * this.clusters;
    this.sizes = new Int32Array(slots);
    this.previous = new Int32Array(slots * this.window).fill(-1);
    this.current = new Int32Array(slots * this.window).fill(-1);
  }

  /** Positions seen per row. */
  get length(): number {
    return this.seen;
  }

  /**
   * Appends `tokens` new positions to every row, given each one's cluster (`assignments`,
   * `[rows, tokens]` row after row, e.g. `assignNearest` of the new vectors), and returns the
   * positions each attends to. Tokens of one call see the earlier ones of the same call, as in a
   * full causal run.
   */
  appendTokens(assignments: ArrayLike<number>): RoutingStep {
    const { rows, clusters, window: w } = this;
    if (assignments.length % rows !== 0) {
      invalid(
        `assignments must hold [rows, tokens] = ${rows} rows of clusters, got ${assignments.length} values.`,
      );
    }
    const tokens = assignments.length / rows;
    const keys = 2 * w;
    const positions = new Int32Array(rows * tokens * keys).fill(-1);
    const counts = new Int32Array(rows * tokens);
    for (let row = 0; row < rows; row++) {
      for (let i = 0; i < tokens; i++) {
        const c = assignments[row * tokens + i]!;
        if (!Number.isInteger(c) || c < 0 || c >= clusters) {
          invalid(`row ${row}, token ${i} is assigned to cluster ${c}, outside [0, ${clusters}).`);
        }
        const slot = row * clusters + c;
        const size = this.sizes[slot]!;
        const filled = size % w;
        const out = (row * tokens + i) * keys;
        let n = 0;
        if (size >= w) {
          positions.set(this.previous.subarray(slot * w, (slot + 1) * w), out);
          n = w;
        }
        positions.set(this.current.subarray(slot * w, slot * w + filled), out + n);
        n += filled;
        const position = this.seen + i;
        positions[out + n] = position;
        counts[row * tokens + i] = n + 1;
        this.current[slot * w + filled] = position;
        this.sizes[slot] = size + 1;
        if (filled + 1 === w) {
          // The window is full: it becomes the previous one, and the next token starts a new one.
          this.previous.set(this.current.subarray(slot * w, (slot + 1) * w), slot * w);
          this.current.fill(-1, slot * w, (slot + 1) * w);
        }
      }
    }
    const start = this.seen;
    this.seen += tokens;
    return { rows, tokens, start, length: this.seen, keys, positions, counts };
  }

  /**
   * The cache as int32 numbers: `[rows, clusters, window, length]`, then per (row, cluster) the
   * token count, then the previous windows' positions, then the current windows'.
   */
  toArray(): Int32Array {
    const out = new Int32Array(HEADER + this.sizes.length + this.previous.length + this.current.length);
    out.set([this.rows, this.clusters, this.window, this.seen]);
    out.set(this.sizes, HEADER);
    out.set(this.previous, HEADER + this.sizes.length);
    out.set(this.current, HEADER + this.sizes.length + this.previous.length);
    return out;
  }

  /** Rebuilds a cache from {@link RoutingCache.toArray}'s numbers; throws when they do not fit. */
  static fromArray(data: ArrayLike<number>): RoutingCache {
    if (data.length < HEADER) invalid(`a saved cache starts with ${HEADER} numbers, got ${data.length}.`);
    const cache = new RoutingCache({ rows: data[0]!, clusters: data[1]!, window: data[2]! });
    const slots = cache.sizes.length;
    const expected = HEADER + slots + 2 * cache.previous.length;
    if (data.length !== expected) {
      invalid(
        `a saved cache of ${data[0]} rows, ${data[1]} clusters and window ${data[2]} holds ${expected} numbers, got ${data.length}.`,
      );
    }
    const length = data[3]!;
    if (!Number.isInteger(length) || length < 0)
      invalid(`the saved length must be an integer >= 0, got ${length}.`);
    cache.seen = length;
    const values = Int32Array.from(data);
    cache.sizes.set(values.subarray(HEADER, HEADER + slots));
    cache.previous.set(values.subarray(HEADER + slots, HEADER + slots + cache.previous.length));
    cache.current.set(values.subarray(HEADER + slots + cache.previous.length));
    for (let row = 0; row < cache.rows; row++) {
      let total = 0;
      for (let c = 0; c < cache.clusters; c++) total += cache.sizes[row * cache.clusters + c]!;
      if (total !== length) invalid(`row ${row} holds ${total} tokens, but the saved length is ${length}.`);
    }
    return cache;
  }
}

/**
 * Attention of appended tokens under a {@link RoutingStep}: query `i` of row `r` attends to the
 * keys at `step.positions` of that row. `queries` `[rows, tokens, dim]` are the new tokens' shared
 * query-key vectors; `keys` `[rows, length, dim]` and `values` `[rows, length, valueDim]` every
 * position seen so far, the new ones included (the op appends them to its cache first). `scale`
 * defaults to `sqrt(dim)`, as `routingAttention`'s. Returns `[rows, tokens, valueDim]`: the
 * outputs the full causal computation gives those positions. Differentiable; nothing read back.
 */
export function routingDecodeAttention(
  queries: tf.Tensor,
  keys: tf.Tensor,
  values: tf.Tensor,
  step: RoutingStep,
  scale?: number,
): tf.Tensor {
  const { rows, tokens, length, keys: width } = step;
  const [, , dim] = keys.shape;
  const valueDim = values.shape[2]!;
  const fits =
    queries.rank === 3 &&
    keys.rank === 3 &&
    values.rank === 3 &&
    queries.shape[0] === rows &&
    queries.shape[1] === tokens &&
    queries.shape[2] === dim &&
    keys.shape[0] === rows &&
    keys.shape[1] === length &&
    values.shape[0] === rows &&
    values.shape[1] === length;
  if (!fits) {
    throw new DynnError(
      'SHAPE_MISMATCH',
      `routingDecodeAttention: needs queries [${rows}, ${tokens}, dim], keys [${rows}, ${length}, dim] and values ` +
        `[${rows}, ${length}, valueDim] for this step, got [${queries.shape.join(', ')}], [${keys.shape.join(', ')}] ` +
        `and [${values.shape.join(', ')}].`,
    );
  }
  const index = new Int32Array(rows * tokens * width);
  const mask = new Float32Array(rows * tokens * width);
  for (let i = 0; i < index.length; i++) {
    const position = step.positions[i]!;
    const row = Math.floor(i / (tokens * width));
    index[i] = position < 0 ? 0 : row * length + position;
    mask[i] = position < 0 ? MASKED_SCORE : 0;
  }
  const factor = scale ?? Math.sqrt(dim!);
  return tf.tidy(() => {
    const ids = tf.tensor2d(index, [rows * tokens, width], 'int32');
    const k = gatherRows(tf.reshape(keys, [rows * length, dim!]), ids) as tf.Tensor3D;
    const v = gatherRows(tf.reshape(values, [rows * length, valueDim]), ids) as tf.Tensor3D;
    const q = tf.reshape(queries, [rows * tokens, 1, dim!]) as tf.Tensor3D;
    const scores = tf.add(
      tf.mul(batchMatMul(q, tf.transpose(k, [0, 2, 1])), tf.scalar(factor)),
      tf.tensor3d(mask, [rows * tokens, 1, width]),
    );
    return tf.reshape(batchMatMul(tf.softmax(scores) as tf.Tensor3D, v), [rows, tokens, valueDim]);
  });
}
