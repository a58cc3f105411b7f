/**
 * Host-side dispatch helpers for mixture-of-experts routing and sparse attention: group rows by
 * an id (the expert, the block), cap each group's size, and size the caps. Pure functions on
 * typed arrays, with no tensors: call them in an op's `decide` step (which may read values back),
 * whose plain-data result the taped `forward` reads as `ctx.decision`, in inference and training.
 */

/**
 * Rows grouped by id: the rows of group `g` are `order[offsets[g] .. offsets[g + 1])`, in
 * ascending row order.
 */
export interface Grouping {
  /** Row indices sorted by group, stably: within a group, rows keep ascending row order. */
  order: Int32Array;
  /** Where each group starts in `order`; `numGroups + 1` entries, the last `order.length`. */
  offsets: Int32Array;
  /** Rows per group: `counts[g] = offsets[g + 1] - offsets[g]`. */
  counts: Int32Array;
}

/** How {@link applyCapacity} chooses the rows a full group keeps. */
export type CapacityPolicy = 'position' | 'score';

/** What {@link applyCapacity} returns. */
export interface CapacityResult {
  /** The rows each group keeps, as a {@link Grouping} (each group's rows in ascending row order). */
  kept: Grouping;
  /** The rows no group kept, in ascending row order. */
  dropped: Int32Array;
}

function checkCount(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${what} must be a non-negative integer, got ${value}`);
  }
}

/** A grouping built from per-group row lists. */
function groupingOf(groups: readonly Int32Array[]): Grouping {
  const offsets = new Int32Array(groups.length + 1);
  const counts = new Int32Array(groups.length);
  groups.forEach((rows, g) => {
    counts[g] = rows.length;
    offsets[g + 1] = offsets[g]! + rows.length;
  });
  const order = new Int32Array(offsets[groups.length]!);
  groups.forEach((rows, g) => {
    order.set(rows, offsets[g]!);
  });
  return { order, offsets, counts };
}

/**
 * Groups rows by id: row `i` belongs to group `ids[i]`. A stable counting sort, O(rows +
 * numGroups): `order` lists the rows of group 0, then of group 1..., each group's rows in
 * ascending row order; a group no row names is empty. Throws when an id is not an integer in
 * `[0, numGroups)`, naming the row.
 *
 * @example
 * ```ts
 * groupByIds(Int32Array.of(1, 0, 1, 3), 4);
 * // { order: [1, 0, 2, 3], offsets: [0, 1, 3, 3, 4], counts: [1, 2, 0, 1] }
 * ```
 */
export function groupByIds(ids: ArrayLike<number>, numGroups: number): Grouping {
  checkCount(numGroups, 'numGroups');
  const counts = new Int32Array(numGroups);
  for (let row = 0; row < ids.length; row++) {
    const id = ids[row]!;
    if (!Number.isInteger(id) || id < 0 || id >= numGroups) {
      throw new Error(`groupByIds: row ${row} has id ${id}, outside [0, ${numGroups})`);
    }
    counts[id]!++;
  }
  const offsets = new Int32Array(numGroups + 1);
  for (let g = 0; g < numGroups; g++) offsets[g + 1] = offsets[g]! + counts[g]!;
  const cursor = offsets.slice(0, numGroups);
  const order = new Int32Array(ids.length);
  for (let row = 0; row < ids.length; row++) order[cursor[ids[row]!]!++] = row;
  return { order, offsets, counts };
}

/** True when row `a` outranks row `b` under the 'score' policy. */
function outranks(scores: ArrayLike<number>, a: number, b: number): boolean {
  const sa = scores[a]!;
  const sb = scores[b]!;
  // NaN ranks below every number; equal scores go to the lower row index.
  if (Number.isNaN(sa) || Number.isNaN(sb))
    return Number.isNaN(sa) === Number.isNaN(sb) ? a < b : !Number.isNaN(sa);
  return sa > sb || (sa === sb && a < b);
}

/**
 * Caps every group of `grouping` at `capacity` rows (the token dropping of GShard and Switch
 * Transformer). A group of at most `capacity` rows keeps them all. A larger group keeps
 * `capacity` of them, chosen by `policy`:
 *
 * - `'position'` (default): its first `capacity` rows in row order (lowest row indices); later
 *   rows are dropped, as GShard drops the tokens that arrive after an expert is full.
 * - `'score'`: its `capacity` rows of highest `scores[row]` (e.g. the router's probability for
 *   the row's group); equal scores go to the lower row index, and NaN ranks below every number.
 *   `scores` is indexed by row and must cover every row of the grouping.
 *
 * Each group's kept rows stay in ascending row order, whatever the policy, so `kept` is again a
 * {@link Grouping}. `dropped` lists every row not kept, ascending. Capacity 0 drops every row.
 * O(rows) for 'position', O(rows log rows) for 'score'; the input is not modified.
 */
export function applyCapacity(
  grouping: Grouping,
  capacity: number,
  policy: CapacityPolicy = 'position',
  scores?: ArrayLike<number>,
): CapacityResult {
  checkCount(capacity, 'capacity');
  if (policy !== 'position' && policy !== 'score') {
    throw new Error(`applyCapacity: policy is ${JSON.stringify(policy)}; expected 'position' or 'score'`);
  }
  const { order, offsets } = grouping;
  const numGroups = offsets.length - 1;
  if (numGroups < 0 || offsets[numGroups] !== order.length) {
    throw new Error(
      `applyCapacity: offsets must have one entry per group plus one, ending at order.length (${order.length})`,
    );
  }
  if (policy === 'score') {
    if (scores === undefined) throw new Error("applyCapacity: the 'score' policy needs scores, one per row");
    for (const row of order) {
      if (row >= scores.length) {
        throw new Error(`applyCapacity: row ${row} has no score (${scores.length} scores given)`);
      }
    }
  }
  const kept: Int32Array[] = [];
  const dropped: number[] = [];
  for (let g = 0; g < numGroups; g++) {
    const rows = order.subarray(offsets[g]!, offsets[g + 1]!);
    if (rows.length <= capacity) {
      kept.push(rows.slice());
      continue;
    }
    if (policy === 'position') {
      kept.push(rows.slice(0, capacity));
      for (const row of rows.subarray(capacity)) dropped.push(row);
      continue;
    }
    const ranked = Array.from(rows).sort((a, b) => (a === b ? 0 : outranks(scores!, a, b) ? -1 : 1));
    kept.push(Int32Array.from(ranked.slice(0, capacity)).sort());
    for (const row of ranked.slice(capacity)) dropped.push(row);
  }
  return { kept: groupingOf(kept), dropped: Int32Array.from(dropped).sort() };
}

/**
 * The rows each group may keep when `tokens` rows are spread over `groups` groups with headroom
 * `factor`: `ceil(tokens * factor / groups)` (GShard's expert capacity; Switch Transformer's
 * capacity factor). A quotient within 1e-9 (relative) of an integer counts as that integer, so
 * float rounding in `tokens * factor` does not add a row (10 tokens, factor 1.1, 11 groups give 1).
 * Throws unless `tokens` is a non-negative integer, `groups` a positive integer and `factor` a
 * positive finite number.
 */
export function capacityFor(tokens: number, groups: number, factor = 1): number {
  checkCount(tokens, 'tokens');
  if (!Number.isInteger(groups) || groups < 1)
    throw new Error(`groups must be a positive integer, got ${groups}`);
  if (!Number.isFinite(factor) || factor <= 0)
    throw new Error(`factor must be a positive number, got ${factor}`);
  const exact = (tokens * factor) / groups;
  const nearest = Math.round(exact);
  return Math.abs(exact - nearest) <= 1e-9 * Math.max(1, nearest) ? nearest : Math.ceil(exact);
}
