import { createRng, DynnError, type Rng } from '@dynn/core';

/** Options of {@link kmeans} and {@link balancedKMeans}. */
export interface KMeansOptions {
  /** Number of clusters, from 1 to the number of rows. */
  k: number;
  /** The most Lloyd iterations (default 100). */
  iterations?: number;
  /**
   * Convergence tolerance (default 1e-4): iterations stop once the centroids moved, in total
   * squared distance, by at most `tolerance` times the data's mean per-dimension variance (as
   * scikit-learn measures it), or once no row changed cluster.
   */
  tolerance?: number;
  /** Seed of the k-means++ initialisation (default 0): the same seed gives the same clusters. */
  seed?: number;
  /**
   * Starting centroids, `k * dims` values (a warm start, e.g. the centroids of an earlier run);
   * without them k-means++ draws them from the data.
   */
  initialCentroids?: Float32Array;
}

/** The clusters {@link kmeans} and {@link balancedKMeans} found. */
export interface KMeansResult {
  /** `k * dims` centroid coordinates, centroid after centroid: the mean of each cluster's rows. */
  centroids: Float32Array;
  /** The cluster of each row, in `[0, k)`. */
  assignment: Int32Array;
  /** Rows in each cluster, `k` counts. */
  sizes: Int32Array;
  /** Sum over rows of the squared distance to their cluster's centroid. */
  inertia: number;
  /** Lloyd iterations run (centroid updates). */
  iterations: number;
}

/** The rows of a k-means problem, checked. */
interface Points {
  data: Float32Array;
  rows: number;
  dims: number;
}

function fail(what: string, message: string): never {
  throw new DynnError('INVALID_OPTION', `${what}: ${message}`);
}

/** Checks the data and options; throws a {@link DynnError} naming the problem and its fix. */
function checkProblem(
  what: string,
  data: Float32Array,
  dims: number,
  options: KMeansOptions,
): { points: Points; k: number; iterations: number; tolerance: number; seed: number; start?: Float64Array } {
  if (!(data instanceof Float32Array)) {
    fail(what, 'the data must be a Float32Array of rows * dims values, row after row.');
  }
  if (!Number.isInteger(dims) || dims < 1) fail(what, `dims must be a positive integer, got ${dims}.`);
  if (data.length % dims !== 0) {
    fail(what, `the data holds ${data.length} values, not a whole number of rows of ${dims} dims.`);
  }
  const rows = data.length / dims;
  const { k, iterations = 100, tolerance = 1e-4, seed = 0 } = options ?? ({} as KMeansOptions);
  if (!Number.isInteger(k) || k < 1) fail(what, `k must be an integer >= 1, got ${k}.`);
  if (k > rows) {
    fail(
      what,
      `k is ${k} but the data has only ${rows} rows: give at least k rows, or ask for fewer clusters.`,
    );
  }
  if (!Number.isInteger(iterations) || iterations < 1) {
    fail(what, `iterations must be an integer >= 1, got ${iterations}.`);
  }
  if (!(tolerance >= 0) || !Number.isFinite(tolerance)) {
    fail(what, `tolerance must be a finite number >= 0, got ${tolerance}.`);
  }
  if (!Number.isInteger(seed)) fail(what, `seed must be an integer, got ${seed}.`);
  const initial = options.initialCentroids;
  if (initial !== undefined) {
    if (!(initial instanceof Float32Array) || initial.length !== k * dims) {
      fail(what, `initialCentroids must be a Float32Array of k * dims = ${k * dims} values.`);
    }
    if (!initial.every(Number.isFinite)) fail(what, 'initialCentroids must hold finite values only.');
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new DynnError(
        'INVALID_INPUT',
        `${what}: row ${Math.floor(i / dims)}, dim ${i % dims} holds ${data[i]}; every value must be finite. ` +
          'Remove or impute the rows with NaN or infinite values first.',
      );
    }
  }
  return {
    points: { data, rows, dims },
    k,
    iterations,
    tolerance,
    seed,
    ...(initial === undefined ? {} : { start: Float64Array.from(initial) }),
  };
}

/** Squared distance between row `row` of the data and centroid `c` (a Float64Array of k * dims). */
function distance(points: Points, row: number, centroids: Float64Array, c: number): number {
  const { data, dims } = points;
  let sum = 0;
  const a = row * dims;
  const b = c * dims;
  for (let j = 0; j < dims; j++) {
    const d = data[a + j]! - centroids[b + j]!;
    sum += d * d;
  }
  return sum;
}

/** The mean per-dimension variance of the data: the scale the tolerance is relative to. */
function meanVariance({ data, rows, dims }: Points): number {
  let total = 0;
  for (let j = 0; j < dims; j++) {
    let mean = 0;
    for (let i = 0; i < rows; i++) mean += data[i * dims + j]!;
    mean /= rows;
    let m2 = 0;
    for (let i = 0; i < rows; i++) {
      const d = data[i * dims + j]! - mean;
      m2 += d * d;
    }
    total += m2 / rows;
  }
  return total / dims;
}

/**
 * k-means++ seeding (Arthur & Vassilvitskii 2007): the first centroid is a uniformly drawn row,
 * each next one a row drawn with probability proportional to its squared distance to the nearest
 * centroid so far. When every row coincides with a centroid, the next is drawn uniformly.
 */
function plusPlus(points: Points, k: number, rng: Rng): Float64Array {
  const { data, rows, dims } = points;
  const centroids = new Float64Array(k * dims);
  const nearest = new Float64Array(rows).fill(Number.POSITIVE_INFINITY);
  let chosen = rng.int(rows);
  for (let c = 0; c < k; c++) {
    for (let j = 0; j < dims; j++) centroids[c * dims + j] = data[chosen * dims + j]!;
    if (c === k - 1) break;
    let total = 0;
    for (let i = 0; i < rows; i++) {
      const d = distance(points, i, centroids, c);
      if (d < nearest[i]!) nearest[i] = d;
      total += nearest[i]!;
    }
    if (total > 0) {
      let target = rng.next() * total;
      chosen = rows - 1;
      for (let i = 0; i < rows; i++) {
        target -= nearest[i]!;
        if (target < 0 && nearest[i]! > 0) {
          chosen = i;
          break;
        }
      }
      // Rounding may run past the end: take the last row still away from every centroid.
      while (nearest[chosen]! === 0 && chosen > 0) chosen--;
    } else {
      chosen = rng.int(rows);
    }
  }
  return centroids;
}

/**
 * Assigns every row to its nearest centroid (ties to the lowest index). Writes the assignment and
 * each row's squared distance; returns how many rows changed cluster.
 */
function assignNearest(
  points: Points,
  centroids: Float64Array,
  k: number,
  assignment: Int32Array,
  distances: Float64Array,
): number {
  let changed = 0;
  for (let i = 0; i < points.rows; i++) {
    let best = 0;
    let bestDistance = distance(points, i, centroids, 0);
    for (let c = 1; c < k; c++) {
      const d = distance(points, i, centroids, c);
      if (d < bestDistance) {
        bestDistance = d;
        best = c;
      }
    }
    if (assignment[i] !== best) changed++;
    assignment[i] = best;
    distances[i] = bestDistance;
  }
  return changed;
}

/** Per-cluster sums of the rows and counts, from an assignment. */
function clusterSums(
  points: Points,
  k: number,
  assignment: Int32Array,
): { sums: Float64Array; counts: Int32Array } {
  const { data, rows, dims } = points;
  const sums = new Float64Array(k * dims);
  const counts = new Int32Array(k);
  for (let i = 0; i < rows; i++) {
    const c = assignment[i]!;
    counts[c]!++;
    for (let j = 0; j < dims; j++) sums[c * dims + j]! += data[i * dims + j]!;
  }
  return { sums, counts };
}

/** Writes each cluster's mean into `centroids` and returns the total squared shift. */
function moveCentroids(
  centroids: Float64Array,
  sums: Float64Array,
  counts: Int32Array,
  dims: number,
): number {
  let shift = 0;
  for (let c = 0; c < counts.length; c++) {
    if (counts[c] === 0) continue;
    for (let j = 0; j < dims; j++) {
      const mean = sums[c * dims + j]! / counts[c]!;
      const d = mean - centroids[c * dims + j]!;
      shift += d * d;
      centroids[c * dims + j] = mean;
    }
  }
  return shift;
}

/**
 * Re-seeds every empty cluster with the row farthest from its centroid (among rows whose cluster
 * keeps at least one other row), moving that row into it. Updates sums, counts and assignment.
 */
function reseedEmpty(
  points: Points,
  assignment: Int32Array,
  distances: Float64Array,
  sums: Float64Array,
  counts: Int32Array,
): void {
  const { data, rows, dims } = points;
  for (let c = 0; c < counts.length; c++) {
    if (counts[c] !== 0) continue;
    let far = -1;
    for (let i = 0; i < rows; i++) {
      if (counts[assignment[i]!]! < 2) continue;
      if (far < 0 || distances[i]! > distances[far]!) far = i;
    }
    // k <= rows, so with an empty cluster some other cluster holds two rows or more.
    const from = assignment[far]!;
    counts[from]!--;
    counts[c] = 1;
    for (let j = 0; j < dims; j++) {
      const v = data[far * dims + j]!;
      sums[from * dims + j]! -= v;
      sums[c * dims + j] = v;
    }
    assignment[far] = c;
    distances[far] = 0;
  }
}

function toResult(
  centroids: Float64Array,
  assignment: Int32Array,
  counts: Int32Array,
  inertia: number,
  iterations: number,
): KMeansResult {
  return {
    centroids: Float32Array.from(centroids),
    assignment,
    sizes: counts,
    inertia,
    iterations,
  };
}

/**
 * Batch k-means on host rows: k-means++ seeding from a seeded generator, then Lloyd iterations
 * (assign each row to its nearest centroid, ties to the lowest index; move each centroid to its
 * rows' mean) until no row changes cluster, the centroids move less than the tolerance, or the
 * iteration limit. A cluster left empty is re-seeded with the row farthest from its centroid.
 * Deterministic: the same data, options and seed give the same result. The returned assignment is
 * each row's nearest final centroid.
 *
 * `data` holds `rows * dims` values, row after row. Throws a {@link DynnError} for k < 1, k larger
 * than the number of rows, or a NaN or infinite value (naming its row).
 *
 * @example
 * ```ts
 * const { centroids, assignment, inertia } = kmeans(points, 2, { k: 8, seed: 1 });
 * ```
 */
export function kmeans(data: Float32Array, dims: number, options: KMeansOptions): KMeansResult {
  const { points, k, iterations, tolerance, seed, start } = checkProblem('kmeans', data, dims, options);
  const centroids = start ?? plusPlus(points, k, createRng(seed));
  const threshold = tolerance * meanVariance(points);
  const assignment = new Int32Array(points.rows).fill(-1);
  const distances = new Float64Array(points.rows);
  let run = 0;
  for (; run < iterations; run++) {
    const changed = assignNearest(points, centroids, k, assignment, distances);
    if (run > 0 && changed === 0) break;
    const { sums, counts } = clusterSums(points, k, assignment);
    reseedEmpty(points, assignment, distances, sums, counts);
    const shift = moveCentroids(centroids, sums, counts, dims);
    if (shift <= threshold) {
      run++;
      break;
    }
  }
  assignNearest(points, centroids, k, assignment, distances);
  let inertia = 0;
  for (const d of distances) inertia += d;
  return toResult(centroids, assignment, clusterSums(points, k, assignment).counts, inertia, run);
}

/**
 * Assigns rows to clusters greedily by distance under per-cluster capacities: (row, cluster)
 * pairs are taken nearest first, a row joining a cluster while it has room. Capacities make the
 * sizes `floor(rows / k)`, plus one for the first `rows % k` clusters to fill up. Returns the
 * inertia of the assignment.
 */
function assignBalanced(
  points: Points,
  centroids: Float64Array,
  k: number,
  assignment: Int32Array,
  order: Uint32Array,
  pairDistances: Float64Array,
): number {
  const { rows } = points;
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < k; c++) pairDistances[i * k + c] = distance(points, i, centroids, c);
  }
  for (let p = 0; p < order.length; p++) order[p] = p;
  // Nearest first; equal distances by row, then by cluster, so the order is total.
  order.sort((a, b) => pairDistances[a]! - pairDistances[b]! || a - b);
  const base = Math.floor(rows / k);
  let larger = rows % k;
  const counts = new Int32Array(k);
  assignment.fill(-1);
  let placed = 0;
  let inertia = 0;
  for (let p = 0; p < order.length && placed < rows; p++) {
    const pair = order[p]!;
    const row = Math.floor(pair / k);
    const c = pair - row * k;
    if (assignment[row] !== -1) continue;
    if (counts[c]! >= base) {
      if (counts[c]! > base || larger === 0) continue;
      larger--;
    }
    counts[c]!++;
    assignment[row] = c;
    inertia += pairDistances[pair]!;
    placed++;
  }
  return inertia;
}

/**
 * Balanced k-means: k clusters of equal size (`rows / k` each; when k does not divide the rows,
 * sizes differ by one at most), as MoEfication (Zhang et al. 2022) uses to split a feed-forward
 * layer's neurons into experts of equal size. k-means++ seeding as in {@link kmeans}, then
 * iterations of a capacity-constrained assignment (greedy: (row, cluster) pairs nearest first,
 * each row to the first cluster in that order that still has room) and centroid updates, until the
 * assignment stops changing, the centroids move less than the tolerance, or the iteration limit.
 * Returns the assignment of lowest inertia seen (the greedy step need not lower it every time),
 * with its clusters' means as centroids. Deterministic given the seed. Memory and time per
 * iteration grow with `rows * k` (every pair is sorted).
 *
 * @example
 * ```ts
 * // 3072 neurons (rows: their input weights) into 96 experts of 32 neurons each.
 * const { assignment, sizes } = balancedKMeans(neuronWeights, dModel, { k: 96, seed: 0 });
 * ```
 */
export function balancedKMeans(data: Float32Array, dims: number, options: KMeansOptions): KMeansResult {
  const { points, k, iterations, tolerance, seed, start } = checkProblem(
    'balancedKMeans',
    data,
    dims,
    options,
  );
  const centroids = start ?? plusPlus(points, k, createRng(seed));
  const threshold = tolerance * meanVariance(points);
  const pairs = points.rows * k;
  const order = new Uint32Array(pairs);
  const pairDistances = new Float64Array(pairs);
  const assignment = new Int32Array(points.rows);
  let best: { assignment: Int32Array; inertia: number } | undefined;
  let previous: Int32Array | undefined;
  let run = 0;
  for (; run < iterations; run++) {
    const inertia = assignBalanced(points, centroids, k, assignment, order, pairDistances);
    if (best === undefined || inertia < best.inertia) best = { assignment: assignment.slice(), inertia };
    if (previous?.every((c, i) => c === assignment[i])) break;
    previous = assignment.slice();
    const { sums, counts } = clusterSums(points, k, assignment);
    if (moveCentroids(centroids, sums, counts, dims) <= threshold) {
      run++;
      const last = assignBalanced(points, centroids, k, assignment, order, pairDistances);
      if (last < best.inertia) best = { assignment: assignment.slice(), inertia: last };
      break;
    }
  }
  const { sums, counts } = clusterSums(points, k, best!.assignment);
  moveCentroids(centroids, sums, counts, dims);
  // Inertia against the best assignment's own means (at most what it was against the old centroids).
  let inertia = 0;
  for (let i = 0; i < points.rows; i++) inertia += distance(points, i, centroids, best!.assignment[i]!);
  return toResult(centroids, best!.assignment, counts, inertia, run);
}
