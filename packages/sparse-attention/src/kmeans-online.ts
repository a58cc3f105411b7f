import { createRng, DynnError } from '@dynn/core';

/**
 * The layout of the routing vectors of one call: `[batch, heads, time, dim]`, row after row (a
 * "row" is one `(batch, head)` pair, `batch * heads` of them, the layout of the op's
 * `[batch * heads, time, dim]` tensors). `valueDim` is the size of each head's values (default
 * `dim`): only the compute report of a plan needs it.
 */
export interface RoutingShape {
  /** Sequences in the batch. */
  batch: number;
  /** Routing heads. */
  heads: number;
  /** Positions per sequence. */
  time: number;
  /** Size of each head's shared query-key vectors. */
  dim: number;
  /** Size of each head's values (default `dim`). */
  valueDim?: number;
}

/**
 * Squared norms below this count as zero when a vector is scaled to unit length: `x / sqrt(|x|^2 +
 * NORM_EPSILON)`, so a zero vector stays zero (and its gradient finite) instead of becoming NaN.
 */
export const NORM_EPSILON = 1e-12;

function fail(what: string, message: string): never {
  throw new DynnError('INVALID_INPUT', `${what}: ${message}`);
}

function checkPositive(what: string, name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) fail(what, `${name} must be an integer >= 1, got ${value}.`);
}

/**
 * @internal Checks a shape and that `vectors` and `centroids` hold `[batch, heads, time, dim]` and
 * `[heads, clusters, dim]` values; returns the number of clusters.
 */
export function checkRoutingArrays(
  what: string,
  vectors: Float32Array,
  centroids: Float32Array,
  shape: RoutingShape,
): number {
  const { batch, heads, time, dim } = shape;
  checkPositive(what, 'batch', batch);
  checkPositive(what, 'heads', heads);
  checkPositive(what, 'time', time);
  checkPositive(what, 'dim', dim);
  if (shape.valueDim !== undefined) checkPositive(what, 'valueDim', shape.valueDim);
  if (!(vectors instanceof Float32Array) || vectors.length !== batch * heads * time * dim) {
    fail(
      what,
      `vectors must be a Float32Array of batch * heads * time * dim = ${batch * heads * time * dim} values ` +
        `([${batch}, ${heads}, ${time}, ${dim}]), got ${vectors?.length ?? 'none'}.`,
    );
  }
  const perHead = heads * dim;
  if (!(centroids instanceof Float32Array) || centroids.length === 0 || centroids.length % perHead !== 0) {
    fail(
      what,
      `centroids must be a Float32Array of heads * clusters * dim values (a multiple of ${perHead}), got ` +
        `${centroids?.length ?? 'none'}.`,
    );
  }
  return centroids.length / perHead;
}

/**
 * Scales each `dim`-sized vector of `values` to unit length (`x / sqrt(|x|^2 + NORM_EPSILON)`, as
 * the tensor path does); returns a new array.
 */
export function unitNormalizeHost(values: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let start = 0; start < values.length; start += dim) {
    let squares = 0;
    for (let j = 0; j < dim; j++) squares += values[start + j]! ** 2;
    const inverse = 1 / Math.sqrt(squares + NORM_EPSILON);
    for (let j = 0; j < dim; j++) out[start + j] = values[start + j]! * inverse;
  }
  return out;
}

/**
 * @internal Dot products of every token with every centroid of its head: `[batch * heads * time, clusters]`,
 * in float64. For unit vectors these are cosine similarities, and the most similar centroid is the
 * nearest (`|x - mu|^2 = 2 - 2 x.mu`).
 */
export function similarities(
  vectors: Float32Array,
  centroids: Float32Array,
  shape: RoutingShape,
  clusters: number,
): Float64Array {
  const { batch, heads, time, dim } = shape;
  const out = new Float64Array(batch * heads * time * clusters);
  for (let row = 0; row < batch * heads; row++) {
    const head = row % heads;
    for (let t = 0; t < time; t++) {
      const token = row * time + t;
      const x = token * dim;
      for (let c = 0; c < clusters; c++) {
        const mu = (head * clusters + c) * dim;
        let dot = 0;
        for (let j = 0; j < dim; j++) dot += vectors[x + j]! * centroids[mu + j]!;
        out[token * clusters + c] = dot;
      }
    }
  }
  return out;
}

/** @internal The cluster of highest similarity per token (ties to the lowest cluster index). */
export function argmaxClusters(sims: Float64Array, clusters: number): Int32Array {
  const tokens = sims.length / clusters;
  const assignment = new Int32Array(tokens);
  for (let token = 0; token < tokens; token++) {
    let best = 0;
    for (let c = 1; c < clusters; c++) {
      if (sims[token * clusters + c]! > sims[token * clusters + best]!) best = c;
    }
    assignment[token] = best;
  }
  return assignment;
}

/**
 * Assigns every token to the nearest centroid of its head on the unit sphere: the centroid of
 * largest dot product (ties to the lowest index). `vectors` `[batch, heads, time, dim]` and
 * `centroids` `[heads, clusters, dim]` should be unit vectors (for others this is the largest dot
 * product, not the nearest point). Returns `batch * heads * time` cluster indices, token after
 * token in the vectors' order. Depends on each token alone: a causal plan's assignment of a
 * position never depends on later positions.
 */
export function assignNearest(
  vectors: Float32Array,
  centroids: Float32Array,
  shape: RoutingShape,
): Int32Array {
  const clusters = checkRoutingArrays('assignNearest', vectors, centroids, shape);
  return argmaxClusters(similarities(vectors, centroids, shape, clusters), clusters);
}

/** What one step of {@link kmeansOnline} did. */
export interface OnlineKMeansStep {
  /** The new centroids, `[heads, clusters, dim]`, unit vectors (empty clusters unchanged). */
  centroids: Float32Array;
  /** The cluster of each token, `batch * heads * time` indices (the one the step used). */
  assignment: Int32Array;
  /** Tokens assigned to each `(head, cluster)`, `heads * clusters` counts over the whole batch. */
  counts: Int32Array;
}

/**
 * One step of online spherical k-means, as the Routing Transformer (Roy et al. 2021) trains its
 * centroids: each token goes to its nearest centroid ({@link assignNearest}, or `assignment` when
 * given, e.g. a plan's), then every centroid that received tokens moves to
 * `decay * mu + (1 - decay) * mean(its tokens)` and is scaled back to unit length; a centroid that
 * received none keeps its value exactly. The host twin of the tensor `centroidUpdate`, which gives
 * the same result on a backend. Sums are kept in float64.
 *
 * `vectors` are `[batch, heads, time, dim]` (unit length), `centroids` `[heads, clusters, dim]`;
 * `decay` is in [0, 1] (0: each centroid jumps to its tokens' normalised mean, 1: no change).
 */
export function kmeansOnline(
  centroids: Float32Array,
  vectors: Float32Array,
  shape: RoutingShape,
  decay: number,
  assignment?: Int32Array,
): OnlineKMeansStep {
  const clusters = checkRoutingArrays('kmeansOnline', vectors, centroids, shape);
  if (!(decay >= 0 && decay <= 1)) fail('kmeansOnline', `decay must be in [0, 1], got ${decay}.`);
  const { batch, heads, time, dim } = shape;
  const tokens = batch * heads * time;
  const assigned = assignment ?? assignNearest(vectors, centroids, shape);
  if (assigned.length !== tokens) {
    fail('kmeansOnline', `assignment must hold one cluster per token (${tokens}), got ${assigned.length}.`);
  }
  const sums = new Float64Array(heads * clusters * dim);
  const counts = new Int32Array(heads * clusters);
  for (let token = 0; token < tokens; token++) {
    const c = assigned[token]!;
    if (!Number.isInteger(c) || c < 0 || c >= clusters) {
      fail('kmeansOnline', `token ${token} is assigned to cluster ${c}, outside [0, ${clusters}).`);
    }
    const slot = (Math.floor(token / time) % heads) * clusters + c;
    counts[slot]!++;
    for (let j = 0; j < dim; j++) sums[slot * dim + j]! += vectors[token * dim + j]!;
  }
  const next = centroids.slice();
  const moved = new Float64Array(dim);
  for (let slot = 0; slot < heads * clusters; slot++) {
    const count = counts[slot]!;
    if (count === 0) continue;
    let squares = 0;
    for (let j = 0; j < dim; j++) {
      const value = decay * centroids[slot * dim + j]! + ((1 - decay) * sums[slot * dim + j]!) / count;
      moved[j] = value;
      squares += value * value;
    }
    const inverse = 1 / Math.sqrt(squares + NORM_EPSILON);
    for (let j = 0; j < dim; j++) next[slot * dim + j] = moved[j]! * inverse;
  }
  return { centroids: next, assignment: assigned, counts };
}

/**
 * Centroids drawn from data, `[heads, clusters, dim]` unit vectors: per head, k-means++ seeding
 * (Arthur & Vassilvitskii 2007) on the unit sphere over the head's `batch * time` tokens (the first
 * a uniformly drawn token, each next one drawn with probability proportional to `1 - cos` to its
 * nearest centroid so far), each normalised. When a head has fewer distinct directions than
 * clusters, the rest are seeded random directions. Deterministic given `seed`.
 *
 * A warm start for {@link kmeansOnline}: random unit centroids may sit where no token is nearest
 * and never move, while data-drawn ones each start with a member.
 */
export function initCentroids(
  vectors: Float32Array,
  shape: RoutingShape,
  clusters: number,
  seed = 0,
): Float32Array {
  checkPositive('initCentroids', 'clusters', clusters);
  const { batch, heads, time, dim } = shape;
  checkRoutingArrays('initCentroids', vectors, new Float32Array(heads * dim), shape);
  const unit = unitNormalizeHost(vectors, dim);
  const rng = createRng(seed);
  const out = new Float32Array(heads * clusters * dim);
  const candidates = batch * time;
  const tokenOf = (head: number, i: number): number =>
    (Math.floor(i / time) * heads + head) * time + (i % time);
  for (let head = 0; head < heads; head++) {
    const nearest = new Float64Array(candidates).fill(Number.POSITIVE_INFINITY);
    let chosen = rng.int(candidates);
    for (let c = 0; c < clusters; c++) {
      const target = (head * clusters + c) * dim;
      let squares = 0;
      if (chosen >= 0) {
        const source = tokenOf(head, chosen) * dim;
        for (let j = 0; j < dim; j++) {
          out[target + j] = unit[source + j]!;
          squares += unit[source + j]! ** 2;
        }
      }
      if (squares < 0.5) {
        // No token left away from every centroid (or a zero token): a random direction keeps the
        // centroid a unit vector distinct from the others.
        for (let j = 0; j < dim; j++) out[target + j] = rng.normal();
        out.set(unitNormalizeHost(out.subarray(target, target + dim), dim), target);
      }
      let total = 0;
      for (let i = 0; i < candidates; i++) {
        const x = tokenOf(head, i) * dim;
        let dot = 0;
        for (let j = 0; j < dim; j++) dot += unit[x + j]! * out[target + j]!;
        nearest[i] = Math.min(nearest[i]!, Math.max(0, 1 - dot));
        total += nearest[i]!;
      }
      chosen = -1;
      if (total > 1e-9) {
        let draw = rng.next() * total;
        for (let i = 0; i < candidates && chosen < 0; i++) {
          draw -= nearest[i]!;
          if (draw < 0 && nearest[i]! > 0) chosen = i;
        }
        // Rounding may run past the end: take the last token still away from every centroid.
        for (let i = candidates - 1; i >= 0 && chosen < 0; i--) if (nearest[i]! > 0) chosen = i;
      }
    }
  }
  return out;
}
