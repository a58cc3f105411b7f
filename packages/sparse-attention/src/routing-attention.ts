import { batchMatMul, DynnError, gatherRows, groupByIds, segmentSum, stopGradient } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  argmaxClusters,
  checkRoutingArrays,
  NORM_EPSILON,
  type RoutingShape,
  similarities,
} from './kmeans-online.js';

/**
 * Attributes of the routing heads of a sparse-attention layer (the Routing Transformer, Roy et al.
 * 2021): how many heads route, into how many clusters, with windows of how many tokens. A type
 * rather than an interface so that it is a JSON attribute value (`Attrs`) as it is.
 */
export type RoutingAttrs = {
  /** Routing heads (the layer's other heads follow its pattern), from 1 to the layer's heads. */
  heads: number;
  /** Centroids per routing head. */
  clusters: number;
  /**
   * Tokens per window, `w`: non-causal, each cluster's `w` tokens most similar to its centroid;
   * causal, each cluster's tokens in position order cut into windows of `w`. Capped at the
   * sequence length.
   */
  window: number;
  /** Causal routing (nearest-centroid windows, no token sees a later one) or balanced top-w. */
  causal: boolean;
  /** EMA decay of the centroids in training, in [0, 1) (the paper's lambda; e.g. 0.999). */
  decay: number;
  /** Weight of the commitment loss (0 adds none). */
  commitment: number;
};

/**
 * Added to the scores of masked (query, key) pairs before the softmax, as core's attention does:
 * large enough that their weights underflow to exactly 0 in float32.
 */
export const MASKED_SCORE = -1e9;

function invalid(message: string): never {
  throw new DynnError('INVALID_ATTR', `routing attention: ${message}`);
}

/**
 * Checks routing attributes for a layer of `numHeads` heads (and, when given, a sequence of
 * `time` positions); throws an `INVALID_ATTR` {@link DynnError} saying which value is wrong and
 * what it may be.
 */
export function validateRoutingAttrs(attrs: RoutingAttrs, numHeads: number, time?: number): void {
  const { heads, clusters, window, causal, decay, commitment } = attrs;
  if (!Number.isInteger(numHeads) || numHeads < 1) {
    invalid(`the layer's head count must be an integer >= 1, got ${numHeads}.`);
  }
  if (!Number.isInteger(heads) || heads < 1 || heads > numHeads) {
    invalid(`heads must be an integer from 1 to the layer's ${numHeads} heads, got ${heads}.`);
  }
  if (!Number.isInteger(clusters) || clusters < 1) {
    invalid(`clusters must be an integer >= 1, got ${clusters}.`);
  }
  if (!Number.isInteger(window) || window < 1) invalid(`window must be an integer >= 1, got ${window}.`);
  if (typeof causal !== 'boolean') invalid(`causal must be true or false, got ${JSON.stringify(causal)}.`);
  if (!(decay >= 0 && decay < 1)) {
    invalid(`decay must be in [0, 1) (0.999 is usual; 1 would freeze the centroids), got ${decay}.`);
  }
  if (!(commitment >= 0 && Number.isFinite(commitment))) {
    invalid(`commitment must be a finite number >= 0, got ${commitment}.`);
  }
  if (time !== undefined && (!Number.isInteger(time) || time < 1)) {
    invalid(`the sequence must hold an integer number >= 1 of positions, got ${time}.`);
  }
}

/**
 * How routing heads attend in one call, made on the host from the routed vectors and the
 * centroids ({@link planRouting}); plain data, so it can be a training decision.
 *
 * Tokens are numbered `row * time + t`, a row being one `(batch, head)` pair (`row = b * heads +
 * h`), as in the `[batch * heads, time, dim]` tensors. Attention runs in `windows` independent
 * windows: window `i` gathers `keysPerWindow` tokens (`keyIndex`), its queries are the last
 * `queriesPerWindow` of them, and `mask` says which (query, key) pairs count.
 */
export interface RoutingPlan {
  /** Causal (nearest-centroid windows) or non-causal (balanced top-w). */
  readonly causal: boolean;
  /** The call's shape, `valueDim` resolved. */
  readonly shape: Readonly<Required<RoutingShape>>;
  /** Centroids per head. */
  readonly clusters: number;
  /** Tokens per window, `w` (the attribute capped at the sequence length). */
  readonly window: number;
  /** Weight of the commitment loss (the attribute). */
  readonly commitment: number;
  /** Windows attended, over every row. */
  readonly windows: number;
  /** Query slots per window: `w`. */
  readonly queriesPerWindow: number;
  /** Key slots per window: `w` (non-causal), `2w` (causal: the previous window of the cluster, then its own). */
  readonly keysPerWindow: number;
  /**
   * `windows * keysPerWindow` token numbers, window after window. Empty slots (a cluster's last
   * window not full, a first window's missing previous one) hold 0 and are masked.
   */
  readonly keyIndex: Int32Array;
  /**
   * Additive mask `[windows, queriesPerWindow, keysPerWindow]`: 0 where the query sees the key, a
   * large negative number elsewhere; undefined when every pair counts (non-causal).
   */
  readonly mask: Float32Array | undefined;
  /** The token each query slot computes, `windows * queriesPerWindow`; -1 for empty slots. */
  readonly slotToken: Int32Array;
  /**
   * Query slots per token (`batch * heads * time`): its output is the mean over them; 0 (a token no
   * non-causal cluster took) outputs zero. Always 1 when causal.
   */
  readonly memberships: Int32Array;
  /** Causal: each token's query slot (a permutation's inverse: the output is gathered by it). */
  readonly inverse: Int32Array | undefined;
  /** Nearest centroid of each token, `batch * heads * time` (the centroid update and commitment loss use it). */
  readonly assignment: Int32Array;
  /** Tokens assigned to each `(head, cluster)` over the batch, `heads * clusters`. */
  readonly clusterSizes: Int32Array;
  /** (Query, key) slot pairs computed, padding included: `windows * queriesPerWindow * keysPerWindow`. */
  readonly pairs: number;
  /** (Query, key) pairs that count (unmasked, of real queries): the dense equivalent's kept entries. */
  readonly keptPairs: number;
  /**
   * FLOPs of {@link routingAttention} under this plan (a multiply-add counts 2): per computed pair,
   * `2 * dim` for the score, 1 for the scale, 1 for the mask when there is one, 4 for the softmax
   * (max subtraction, exp, sum, division) and `2 * valueDim` for the weighted sum; non-causal
   * adds `2 * valueDim` per query slot for the membership mean.
   */
  readonly flops: number;
  /**
   * Bytes {@link routingAttention} moves: the gathered key and value rows and their indices, the
   * mask, and putting the outputs back (a gather by `inverse`, or a weighted scatter-add).
   */
  readonly bytes: number;
}

/**
 * Plans the routing heads of one call on the host. `vectors` are the shared query-key vectors
 * `[batch, heads, time, dim]`, unit length; `centroids` `[heads, clusters, dim]`, unit length.
 *
 * Every token's `assignment` is its nearest centroid (largest dot product, ties to the lowest
 * index). Then:
 *
 * - **causal**: each cluster's tokens, in position order, are cut into consecutive windows of `w`;
 *   a window's queries attend to the keys of their own window at positions up to theirs and to all
 *   keys of the cluster's previous window (earlier positions, by construction). No window's content
 *   up to a position depends on later positions, and every token is a query exactly once.
 * - **non-causal** (balanced top-w): each cluster takes the `w` tokens most similar to its
 *   centroid (ties to the lower position), in position order, and they attend to each other fully.
 *   A token may be taken by several clusters (its output is the mean) or by none (zero output).
 *
 * Throws an `INVALID_INPUT` {@link DynnError} when the arrays do not fit the shape, or an
 * `INVALID_ATTR` one for bad attributes or a head or cluster count that disagrees with the arrays.
 */
export function planRouting(
  vectors: Float32Array,
  centroids: Float32Array,
  shape: RoutingShape,
  attrs: RoutingAttrs,
): RoutingPlan {
  const clusters = checkRoutingArrays('planRouting', vectors, centroids, shape);
  validateRoutingAttrs(attrs, shape.heads, shape.time);
  if (attrs.heads !== shape.heads) {
    invalid(`the vectors hold ${shape.heads} heads but the attributes route ${attrs.heads}.`);
  }
  if (attrs.clusters !== clusters) {
    invalid(`the centroids hold ${clusters} clusters per head but the attributes ask for ${attrs.clusters}.`);
  }
  const full = { ...shape, valueDim: shape.valueDim ?? shape.dim };
  const sims = similarities(vectors, centroids, full, clusters);
  const assignment = argmaxClusters(sims, clusters);
  const clusterSizes = new Int32Array(full.heads * clusters);
  for (let token = 0; token < assignment.length; token++) {
    clusterSizes[(Math.floor(token / full.time) % full.heads) * clusters + assignment[token]!]!++;
  }
  const w = Math.min(attrs.window, full.time);
  const layout = attrs.causal
    ? causalWindows(assignment, full, clusters, w)
    : topWindows(sims, full, clusters, w);
  return {
    causal: attrs.causal,
    shape: full,
    clusters,
    window: w,
    commitment: attrs.commitment,
    ...layout,
    assignment,
    clusterSizes,
    ...cost(layout, full),
  };
}

/** The windows of a plan, before its bookkeeping and cost. */
interface WindowLayout {
  windows: number;
  queriesPerWindow: number;
  keysPerWindow: number;
  keyIndex: Int32Array;
  mask: Float32Array | undefined;
  slotToken: Int32Array;
  memberships: Int32Array;
  inverse: Int32Array | undefined;
  keptPairs: number;
}

/** Causal windows: each row's tokens grouped by cluster (in position order), cut every `w`. */
function causalWindows(
  assignment: Int32Array,
  shape: Required<RoutingShape>,
  clusters: number,
  w: number,
): WindowLayout {
  const { batch, heads, time } = shape;
  const rows = batch * heads;
  const groupings = [];
  let windows = 0;
  for (let row = 0; row < rows; row++) {
    // groupByIds keeps each group's rows in ascending order: each cluster's tokens by position.
    const grouping = groupByIds(assignment.subarray(row * time, (row + 1) * time), clusters);
    for (const count of grouping.counts) windows += Math.ceil(count / w);
    groupings.push(grouping);
  }
  const keys = 2 * w;
  const keyIndex = new Int32Array(windows * keys);
  const mask = new Float32Array(windows * w * keys).fill(MASKED_SCORE);
  const slotToken = new Int32Array(windows * w).fill(-1);
  const inverse = new Int32Array(rows * time);
  let keptPairs = 0;
  let window = 0;
  for (let row = 0; row < rows; row++) {
    const { order, offsets, counts } = groupings[row]!;
    for (let c = 0; c < clusters; c++) {
      const first = offsets[c]!;
      for (let start = 0; start < counts[c]!; start += w, window++) {
        const own = Math.min(w, counts[c]! - start);
        const previous = start > 0 ? w : 0;
        for (let s = 0; s < previous; s++) {
          keyIndex[window * keys + s] = row * time + order[first + start - w + s]!;
        }
        for (let q = 0; q < own; q++) {
          const token = row * time + order[first + start + q]!;
          keyIndex[window * keys + w + q] = token;
          slotToken[window * w + q] = token;
          inverse[token] = window * w + q;
          const maskRow = (window * w + q) * keys;
          mask.fill(0, maskRow, maskRow + previous);
          mask.fill(0, maskRow + w, maskRow + w + q + 1);
          keptPairs += previous + q + 1;
        }
      }
    }
  }
  return {
    windows,
    queriesPerWindow: w,
    keysPerWindow: keys,
    keyIndex,
    mask,
    slotToken,
    memberships: new Int32Array(rows * time).fill(1),
    inverse,
    keptPairs,
  };
}

/** Non-causal windows: per row and cluster, the `w` most similar tokens, in position order. */
function topWindows(
  sims: Float64Array,
  shape: Required<RoutingShape>,
  clusters: number,
  w: number,
): WindowLayout {
  const { batch, heads, time } = shape;
  const rows = batch * heads;
  const windows = rows * clusters;
  const keyIndex = new Int32Array(windows * w);
  const memberships = new Int32Array(rows * time);
  const order = new Int32Array(time);
  for (let row = 0; row < rows; row++) {
    for (let c = 0; c < clusters; c++) {
      const score = (t: number): number => sims[(row * time + t) * clusters + c]!;
      for (let t = 0; t < time; t++) order[t] = t;
      order.sort((a, b) => score(b) - score(a) || a - b);
      const chosen = order.slice(0, w).sort();
      const window = row * clusters + c;
      for (let s = 0; s < w; s++) {
        const token = row * time + chosen[s]!;
        keyIndex[window * w + s] = token;
        memberships[token]!++;
      }
    }
  }
  return {
    windows,
    queriesPerWindow: w,
    keysPerWindow: w,
    keyIndex,
    mask: undefined,
    slotToken: keyIndex.slice(),
    memberships,
    inverse: undefined,
    keptPairs: windows * w * w,
  };
}

/** FLOPs and bytes of attention under a layout (see {@link RoutingPlan.flops} and `bytes`). */
function cost(
  layout: WindowLayout,
  shape: Required<RoutingShape>,
): { pairs: number; flops: number; bytes: number } {
  const { windows, queriesPerWindow: wq, keysPerWindow: wk, mask, inverse } = layout;
  const { dim, valueDim } = shape;
  const pairs = windows * wq * wk;
  const slots = windows * wq;
  const perPair = 2 * dim + 1 + (mask === undefined ? 0 : 1) + 4 + 2 * valueDim;
  const flops = pairs * perPair + (inverse === undefined ? 2 * slots * valueDim : 0);
  const gathered = windows * wk * (dim + valueDim + 1);
  // Putting back: a gather of one row and index per token, or a scatter-add of every query slot
  // with its token id and weight.
  const putBack = inverse === undefined ? slots * (valueDim + 2) : inverse.length * (valueDim + 1);
  const bytes = 4 * (gathered + (mask === undefined ? 0 : pairs) + putBack);
  return { pairs, flops, bytes };
}

/**
 * Scales each vector (last axis) of `x` to unit length: `x / sqrt(|x|^2 + 1e-12)`, differentiable.
 * How routing heads normalise their shared query-key vectors: plain L2 normalisation, without the
 * paper's layer norm (which also centres each vector and leaves it of norm `sqrt(dim)`), so that
 * dot products are cosines, a centroid's nearest tokens are its most similar ones, and the
 * centroids live on the same unit sphere. {@link routingAttention}'s default scale gives back the
 * paper's logit range.
 */
export function unitNormalize(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.div(x, tf.sqrt(tf.add(tf.sum(tf.square(x), -1, true), tf.scalar(NORM_EPSILON)))));
}

function checkRows(
  what: string,
  name: string,
  tensor: tf.Tensor,
  rows: number,
  time: number,
  size: number,
): void {
  const [r, t, s] = tensor.shape;
  if (tensor.rank !== 3 || r !== rows || t !== time || s !== size) {
    throw new DynnError(
      'SHAPE_MISMATCH',
      `${what}: ${name} must be [batch * heads, time, ${size}] = [${rows}, ${time}, ${size}] as the plan ` +
        `was made for, got [${tensor.shape.join(', ')}].`,
    );
  }
}

/**
 * Routing attention under a plan: gathers each window's tokens (`[windows, keys, dim]`), computes
 * `softmax(scale * q k^T + mask) v` per window with batched matrix products, and puts the results
 * back (causal: a gather by the inverse permutation; non-causal: each query slot's output weighted
 * by `1 / memberships` and added to its token, so a token's output is the mean over its clusters
 * and zero for a token in none). Memory and FLOPs grow with `windows * w * keys`, never
 * `time^2`.
 *
 * `qk` `[batch * heads, time, dim]` holds the shared query-key vectors (normalised, see
 * {@link unitNormalize}: queries and keys are the same tensor), `v` `[batch * heads, time,
 * valueDim]` the values. `scale` defaults to `sqrt(dim)`: unit vectors' dot products are cosines
 * in [-1, 1], and `sqrt(dim) * cos` is the paper's `q.k / sqrt(dim)` for layer-normalised vectors
 * of norm `sqrt(dim)`.
 *
 * Differentiable with respect to `qk` and `v` on every backend (core's `gatherRows`,
 * `batchMatMul` and `segmentSum` carry their own gradients; the rest are tfjs ops with gradients
 * everywhere). Nothing is read back. Returns `[batch * heads, time, valueDim]`.
 */
export function routingAttention(qk: tf.Tensor, v: tf.Tensor, plan: RoutingPlan, scale?: number): tf.Tensor {
  const { batch, heads, time, dim, valueDim } = plan.shape;
  const rows = batch * heads;
  checkRows('routingAttention', 'qk', qk, rows, time, dim);
  checkRows('routingAttention', 'v', v, rows, time, valueDim);
  const { windows, queriesPerWindow: wq, keysPerWindow: wk } = plan;
  const tokens = rows * time;
  const factor = scale ?? Math.sqrt(dim);
  return tf.tidy(() => {
    const index = tf.tensor2d(plan.keyIndex, [windows, wk], 'int32');
    const keys = gatherRows(tf.reshape(qk, [tokens, dim]), index) as tf.Tensor3D;
    const values = gatherRows(tf.reshape(v, [tokens, valueDim]), index) as tf.Tensor3D;
    // Queries are the last wq key slots (a window's own tokens), so one gather serves both.
    const queries = wq === wk ? keys : tf.slice(keys, [0, wk - wq, 0], [windows, wq, dim]);
    let scores = tf.mul(batchMatMul(queries, tf.transpose(keys, [0, 2, 1])), tf.scalar(factor));
    if (plan.mask !== undefined) scores = tf.add(scores, tf.tensor3d(plan.mask, [windows, wq, wk]));
    const slots = tf.reshape(batchMatMul(tf.softmax(scores) as tf.Tensor3D, values), [
      windows * wq,
      valueDim,
    ]);
    let out: tf.Tensor;
    if (plan.inverse !== undefined) {
      out = gatherRows(slots, tf.tensor1d(plan.inverse, 'int32'));
    } else {
      const weights = new Float32Array(windows * wq);
      const ids = new Int32Array(windows * wq);
      plan.slotToken.forEach((token, slot) => {
        if (token < 0) return;
        ids[slot] = token;
        weights[slot] = 1 / plan.memberships[token]!;
      });
      const weighted = tf.mul(slots, tf.tensor2d(weights, [windows * wq, 1]));
      out = segmentSum(weighted, tf.tensor1d(ids, 'int32'), tokens);
    }
    return tf.reshape(out, [rows, time, valueDim]);
  });
}

/** Checks the centroid tensor against a plan; returns the vectors as `[tokens, dim]`. */
function flatVectors(what: string, vectors: tf.Tensor, centroids: tf.Tensor, plan: RoutingPlan): tf.Tensor2D {
  const { batch, heads, time, dim } = plan.shape;
  const [h, c, d] = centroids.shape;
  if (centroids.rank !== 3 || h !== heads || c !== plan.clusters || d !== dim) {
    throw new DynnError(
      'SHAPE_MISMATCH',
      `${what}: centroids must be [heads, clusters, dim] = [${heads}, ${plan.clusters}, ${dim}], got ` +
        `[${centroids.shape.join(', ')}].`,
    );
  }
  if (vectors.size !== batch * heads * time * dim || vectors.shape.at(-1) !== dim) {
    throw new DynnError(
      'SHAPE_MISMATCH',
      `${what}: vectors must hold [batch * heads, time, dim] = [${batch * heads}, ${time}, ${dim}] values ` +
        `as the plan was made for, got [${vectors.shape.join(', ')}].`,
    );
  }
  return tf.reshape(vectors, [batch * heads * time, dim]);
}

/** Each token's `(head, cluster)` slot in a `[heads * clusters]` table, from the plan's assignment. */
function clusterSlots(plan: RoutingPlan): Int32Array {
  const { heads, time } = plan.shape;
  return plan.assignment.map((c, token) => (Math.floor(token / time) % heads) * plan.clusters + c);
}

/**
 * The centroids after one training step of online spherical k-means (the tensor twin of the host
 * `kmeansOnline`): every centroid that received tokens in the plan's `assignment` becomes
 * `decay * mu + (1 - decay) * mean(its tokens)`, scaled back to unit length; one that received
 * none keeps its value exactly. `centroids` `[heads, clusters, dim]`, `vectors` the routed vectors
 * (`[batch * heads, time, dim]`, or any shape of the same values). Returns a new
 * `[heads, clusters, dim]` tensor (the op's state update); nothing is read back.
 */
export function centroidUpdate(
  centroids: tf.Tensor,
  vectors: tf.Tensor,
  plan: RoutingPlan,
  decay: number,
): tf.Tensor {
  if (!(decay >= 0 && decay <= 1)) invalid(`decay must be in [0, 1], got ${decay}.`);
  const { heads, dim } = plan.shape;
  const slots = heads * plan.clusters;
  return tf.tidy(() => {
    const flat = flatVectors('centroidUpdate', vectors, centroids, plan);
    const old = tf.reshape(centroids, [slots, dim]);
    const sums = segmentSum(flat, tf.tensor1d(clusterSlots(plan), 'int32'), slots);
    const counts = Float32Array.from(plan.clusterSizes, (n) => Math.max(n, 1));
    const means = tf.div(sums, tf.tensor2d(counts, [slots, 1]));
    const moved = tf.add(tf.mul(old, tf.scalar(decay)), tf.mul(means, tf.scalar(1 - decay)));
    // old + hasTokens * (new - old): exactly old where the cluster received nothing.
    const hasTokens = tf.tensor2d(
      Float32Array.from(plan.clusterSizes, (n) => (n > 0 ? 1 : 0)),
      [slots, 1],
    );
    const updated = tf.add(old, tf.mul(hasTokens, tf.sub(unitNormalize(moved), old)));
    return tf.reshape(updated, [heads, plan.clusters, dim]);
  });
}

/**
 * The commitment loss of the routed vectors, already weighted by the plan's `commitment`:
 * `commitment * mean over tokens of |x - mu(x)|^2`, `mu(x)` the centroid of the token's
 * `assignment`, held constant (the gradient pulls the vectors towards their centroids; the
 * centroids move by {@link centroidUpdate} only). The op adds it with `ctx.addLoss(loss,
 * 'commitment')`. `vectors` `[batch * heads, time, dim]`, `centroids` `[heads, clusters, dim]`.
 */
export function commitmentLoss(vectors: tf.Tensor, centroids: tf.Tensor, plan: RoutingPlan): tf.Scalar {
  return tf.tidy(() => {
    const flat = flatVectors('commitmentLoss', vectors, centroids, plan);
    const table = stopGradient(tf.reshape(centroids, [plan.shape.heads * plan.clusters, plan.shape.dim]));
    const assigned = gatherRows(table, tf.tensor1d(clusterSlots(plan), 'int32'));
    const distances = tf.sum(tf.square(tf.sub(flat, assigned)), -1);
    return tf.mul(tf.mean(distances), tf.scalar(plan.commitment)) as tf.Scalar;
  });
}
