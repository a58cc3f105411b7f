import { batchMatMul, gatherRows } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import type { BlockPlan, PlanGroup } from './block-plan.js';
import { alibiSlopes, relativeBucket, type ScoreMod } from './score-mods.js';

/** The heads and sizes {@link blockAttention} computes with. */
export interface BlockAttentionOptions {
  /** Query heads. */
  numHeads: number;
  /** Key/value heads; each serves `numHeads / numKvHeads` consecutive query heads. */
  numKvHeads: number;
  /** Size of each query/key head. */
  keyDim: number;
  /** Size of each value head. */
  valueDim: number;
  /** Score modifiers, in order. */
  scoreMods: readonly ScoreMod[];
  /** The `relative-bias` modifier's table `[buckets, numHeads]`, when there is one. */
  relativeBias?: tf.Tensor;
}

/** `x` `[batch, heads, time, dim]` padded with zeros along time to `length` positions. */
function padTime(x: tf.Tensor, length: number): tf.Tensor {
  const time = x.shape[2]!;
  return length === time
    ? x
    : tf.pad(
        x,
        [
          [0, 0],
          [0, 0],
          [0, length - time],
          [0, 0],
        ],
        0,
      );
}

/**
 * `next`, after disposing `done`: a step's inputs freed as soon as its output exists, reshape
 * views included (tfjs counts every handle's bytes). Safe under a gradient tape, which keeps its
 * own handles on what backprop reads.
 */
function then<T extends tf.Tensor>(done: tf.Tensor[], next: T): T {
  for (const t of done) t.dispose();
  return next;
}

/** How one group of query blocks is laid out: instances, gathers and positions, as plain arrays. */
interface GroupLayout {
  /** Units (plan rows' query blocks) of the group: `U`. */
  units: number;
  /** Batch rows each unit is computed for: the batch when every row shares the plan, else 1. */
  expand: number;
  /** Slots gathered per unit. */
  kept: number;
  /**
   * Per instance (`[expand, kvHeads, units]`), its row in the query block table
   * `[batch * kvHeads * queryBlocks]`.
   */
  queryRows: Int32Array;
  /** Whether `queryRows` is `0, 1, 2...`: the group is every query block, in table order. */
  identity: boolean;
  /** Per instance and slot, its row in the key block table `[batch * kvHeads * (keyBlocks + 1)]`. */
  keyRows: Int32Array;
  /** Absolute positions of each unit's queries `[units, queryBlockSize]` (past the last query they continue). */
  queryPositions: Int32Array;
  /** Absolute positions of each unit's gathered keys `[units, kept * blockSize]`. */
  keyPositions: Int32Array;
}

function groupLayout(plan: BlockPlan, group: PlanGroup, batch: number, kvHeads: number): GroupLayout {
  const { queryBlocks, keyBlocks, blockSize: b, queryBlockSize: qb, keyStart } = plan;
  const { kept, units } = group;
  const expand = plan.rows === 1 ? batch : 1;
  const count = units.length;
  const queryRows = new Int32Array(expand * kvHeads * count);
  const keyRows = new Int32Array(queryRows.length * kept);
  let at = 0;
  for (let e = 0; e < expand; e++) {
    for (let h = 0; h < kvHeads; h++) {
      for (const unit of units) {
        const row = plan.rows === 1 ? e : Math.floor(unit / queryBlocks);
        queryRows[at] = (row * kvHeads + h) * queryBlocks + (unit % queryBlocks);
        const base = (row * kvHeads + h) * (keyBlocks + 1);
        for (let s = 0; s < kept; s++) keyRows[at * kept + s] = base + plan.slots[unit * plan.kept + s]!;
        at++;
      }
    }
  }
  const queryStart = keyStart + plan.keys - plan.queries;
  const queryPositions = new Int32Array(count * qb);
  const keyPositions = new Int32Array(count * kept * b);
  units.forEach((unit, u) => {
    const first = queryStart + (unit % queryBlocks) * qb;
    for (let i = 0; i < qb; i++) queryPositions[u * qb + i] = first + i;
    for (let s = 0; s < kept; s++) {
      const block = plan.slots[unit * plan.kept + s]!;
      for (let t = 0; t < b; t++) keyPositions[(u * kept + s) * b + t] = keyStart + block * b + t;
    }
  });
  return {
    units: count,
    expand,
    kept,
    queryRows,
    identity: queryRows.length === batch * kvHeads * queryBlocks && queryRows.every((r, i) => r === i),
    keyRows,
    queryPositions,
    keyPositions,
  };
}

/**
 * The rows `rows` of a block table `[blocks, blockSize * dim]`, as `[instances, slots * blockSize,
 * dim]` (`gatherRows`: wasm's gatherND is ~10x faster than its Gather, and its gradient needs no
 * `UnsortedSegmentSum`).
 */
function gatherBlocks(table: tf.Tensor, rows: Int32Array, instances: number, dim: number): tf.Tensor3D {
  const indices = tf.tensor1d(rows, 'int32');
  const gathered = gatherRows(table, indices);
  return then([indices, gathered], tf.reshape(gathered, [instances, -1, dim]) as tf.Tensor3D);
}

/** `x` `[batch, kvHeads, keys, dim]` cut into key blocks, a zero block (the sentinel's) after each row's: `[batch * kvHeads * (keyBlocks + 1), blockSize * dim]`. */
function blockTable(x: tf.Tensor, plan: BlockPlan): tf.Tensor {
  const [batch, kvHeads, , dim] = x.shape as [number, number, number, number];
  const { blockSize: b, keyBlocks } = plan;
  return tf.reshape(padTime(x, (keyBlocks + 1) * b), [batch * kvHeads * (keyBlocks + 1), b * dim]);
}

/** Key minus query position of every pair of a group, `[units, queryBlockSize, kept * blockSize]` int32, and its range. */
function relativePositions(
  layout: GroupLayout,
  qb: number,
): { relative: tf.Tensor; least: number; most: number } {
  const { queryPositions: query, keyPositions: key, units } = layout;
  let [lowest, highest] = [key[0]!, key[0]!];
  for (const p of key) [lowest, highest] = [Math.min(lowest, p), Math.max(highest, p)];
  const [first, last] = [Math.min(...query), Math.max(...query)];
  const relative = tf.sub(
    tf.tensor3d(key, [units, 1, key.length / units], 'int32'),
    tf.tensor3d(query, [units, qb, 1], 'int32'),
  );
  return { relative, least: lowest - last, most: highest - first };
}

/**
 * What an additive score modifier adds to a group's scores, shaped `[1, kvHeads, units *
 * queryBlockSize, group, kept * blockSize]` to broadcast over them.
 */
function modBias(
  mod: Exclude<ScoreMod, { type: 'softcap' }>,
  pairs: ReturnType<typeof relativePositions>,
  rows: number,
  keys: number,
  options: BlockAttentionOptions,
): tf.Tensor {
  const { numHeads: heads, numKvHeads: kvHeads } = options;
  const group = heads / kvHeads;
  const { relative, least, most } = pairs;
  if (mod.type === 'alibi') {
    const distance = tf.reshape(tf.abs(tf.cast(relative, 'float32')), [1, 1, rows, 1, keys]);
    const slopes = alibiSlopes(heads).map((s) => -s);
    return tf.mul(distance, tf.reshape(tf.tensor1d(slopes), [1, kvHeads, 1, group, 1]));
  }
  // The bucket of every relative position this group meets, as a table gathered per pair.
  const buckets = Int32Array.from({ length: most - least + 1 }, (_, r) =>
    relativeBucket(least + r, mod.buckets, mod.maxDistance, mod.bidirectional),
  );
  const ids = gatherRows(
    tf.tensor1d(buckets, 'int32'),
    tf.reshape(tf.sub(relative, tf.scalar(least, 'int32')), [-1]),
  );
  // [pairs, heads] -> [1, kvHeads, queries, group, keys].
  const perPair = tf.reshape(gatherRows(options.relativeBias!, ids), [1, rows, keys, kvHeads, group]);
  return tf.transpose(perPair, [0, 3, 1, 4, 2]);
}

/**
 * The additive mask of a group, `[1, 1, units * queryBlockSize, 1, kept * blockSize]`: for each
 * unit, query and slot, one row of the slot's tile, gathered from the plan's distinct tiles seen
 * as `[tiles * queryBlockSize, blockSize]`, so the rows come out in score order with no transpose.
 */
function groupMask(plan: BlockPlan, group: PlanGroup, tiles: tf.Tensor): tf.Tensor {
  const { queryBlockSize: qb, blockSize: b } = plan;
  const { kept, units } = group;
  const rows = new Int32Array(units.length * qb * kept);
  units.forEach((unit, u) => {
    for (let i = 0; i < qb; i++) {
      for (let s = 0; s < kept; s++) {
        rows[(u * qb + i) * kept + s] = plan.slotMask[unit * plan.kept + s]! * qb + i;
      }
    }
  });
  const indices = tf.tensor1d(rows, 'int32');
  const gathered = gatherRows(tiles, indices);
  return then([indices, gathered], tf.reshape(gathered, [1, 1, units.length * qb, 1, kept * b]));
}

/**
 * `scores + mask` whose gradient is `dy` alone: `tf.add` would keep both operands for backprop, a
 * whole score tensor per group, though its gradient needs neither.
 */
function addMask(scores: tf.Tensor, mask: tf.Tensor): tf.Tensor {
  const add = tf.customGrad((...args) => ({
    value: tf.add(args[0] as tf.Tensor, mask),
    gradFunc: (dy: tf.Tensor) => dy,
  }));
  return add(scores);
}

/**
 * One group's attention: its instances' queries (`[instances, queryBlockSize * group, keyDim]`,
 * scaled) against their gathered key blocks; returns `[instances, queryBlockSize * group *
 * valueDim]`. Each score-sized intermediate is disposed once the next is made (backprop keeps its
 * own handle on what it needs), so a forward pass holds at most two of them at a time.
 */
function groupAttention(
  queries: tf.Tensor3D,
  keyTable: tf.Tensor,
  valueTable: tf.Tensor,
  maskTiles: tf.Tensor | undefined,
  plan: BlockPlan,
  group: PlanGroup,
  layout: GroupLayout,
  options: BlockAttentionOptions,
): tf.Tensor {
  const { numKvHeads: kvHeads, keyDim, valueDim } = options;
  const heads = options.numHeads / kvHeads;
  const { queryBlockSize: qb, blockSize: b } = plan;
  const instances = layout.queryRows.length;
  const keys = layout.kept * b;
  const rows = layout.units * qb;
  const gathered = gatherBlocks(keyTable, layout.keyRows, instances, keyDim);
  const keysT = then([gathered], tf.transpose(gathered, [0, 2, 1]) as tf.Tensor3D);
  const product = then([keysT], batchMatMul(queries, keysT));
  // Seen as [expand, kvHeads, unit queries, group, kept keys] to broadcast per-pair terms.
  let scores = then([product], tf.reshape(product, [layout.expand, kvHeads, rows, heads, keys]));
  const replace = (next: tf.Tensor) => {
    scores = then([scores], next);
  };
  const biased = options.scoreMods.some((mod) => mod.type !== 'softcap');
  const pairs = biased ? relativePositions(layout, qb) : undefined;
  for (const mod of options.scoreMods) {
    if (mod.type === 'softcap') {
      replace(tf.div(scores, mod.cap));
      replace(tf.tanh(scores));
      replace(tf.mul(scores, mod.cap));
    } else {
      const bias = tf.tidy(() => modBias(mod, pairs!, rows, keys, options));
      replace(then([bias], tf.add(scores, bias)));
    }
  }
  if (group.masked) {
    const mask = groupMask(plan, group, maskTiles!);
    replace(then([mask], addMask(scores, mask)));
  }
  replace(tf.softmax(scores));
  replace(tf.reshape(scores, [instances, qb * heads, keys]));
  const values = gatherBlocks(valueTable, layout.keyRows, instances, valueDim);
  const attended = then([values], batchMatMul(scores as tf.Tensor3D, values));
  return then([scores, attended], tf.reshape(attended, [instances, qb * heads * valueDim]));
}

/**
 * Block-sparse scaled dot-product attention, in plain tfjs ops (gradients from the tape on every
 * backend): keys and values are cut into blocks of the plan's block size, each query block gathers
 * the key blocks the plan keeps (`gatherRows`, whose gradient needs no `UnsortedSegmentSum`), and
 * its scores are one batched matrix product `[queryBlockSize x group, kept x blockSize]`; the
 * score modifiers, the mask of partly kept tiles and sentinels, the softmax and the weighted sum
 * of the gathered values follow. No dense `n x n` score matrix is ever built: memory and work
 * grow with the kept tiles.
 *
 * Query blocks are computed group by group ({@link BlockPlan}'s `groups`, by the length of their
 * kept lists), each padded only to its own longest list, so a causal pattern or a global block
 * does not make every query block compute every key block. A group's query blocks are gathered
 * from the query table and the groups' outputs put back in order by one gather; a plan of one
 * group (a window) needs neither. Each group's intermediates are freed before the next starts.
 *
 * Grouped-query attention: query heads `h * group ... (h + 1) * group - 1` share key/value head
 * `h`, whose blocks are gathered once and multiplied with the whole group's queries at once.
 *
 * - `q` `[batch, queries, numHeads * keyDim]`: projected queries, heads side by side
 * - `k` `[batch, numKvHeads, keys, keyDim]`, `v` `[batch, numKvHeads, keys, valueDim]`
 * - returns `[batch, queries, numHeads * valueDim]`; a query that keeps no key gets zeros
 */
export function blockAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  plan: BlockPlan,
  options: BlockAttentionOptions,
): tf.Tensor {
  const { numHeads: heads, numKvHeads: kvHeads, keyDim, valueDim } = options;
  const group = heads / kvHeads;
  const batch = q.shape[0]!;
  const { queries, queryBlocks, queryBlockSize: qb, blockSize: b } = plan;
  return tf.tidy(() => {
    // Queries [batch * kvHeads * queryBlocks, qb * group * keyDim]: a block's rows, query-major,
    // scaled here rather than the scores (kept x blockSize / keyDim times fewer values).
    const qHeads = tf.transpose(tf.reshape(q, [batch, queries, kvHeads, group * keyDim]), [0, 2, 1, 3]);
    const queryTable = tf.reshape(tf.mul(padTime(qHeads, queryBlocks * qb), 1 / Math.sqrt(keyDim)), [
      batch * kvHeads * queryBlocks,
      qb * group * keyDim,
    ]);
    const keyTable = blockTable(k, plan);
    const valueTable = blockTable(v, plan);
    const maskTiles = plan.masked ? tf.tensor2d(plan.maskTiles, [plan.maskTiles.length / b, b]) : undefined;
    const layouts = plan.groups.map((g) => groupLayout(plan, g, batch, kvHeads));
    const outputs = plan.groups.map((g, at) =>
      tf.tidy(() => {
        const layout = layouts[at]!;
        const rows = layout.identity
          ? queryTable
          : gatherRows(queryTable, tf.tensor1d(layout.queryRows, 'int32'));
        const groupQueries = tf.reshape(rows, [layout.queryRows.length, qb * group, keyDim]) as tf.Tensor3D;
        return groupAttention(groupQueries, keyTable, valueTable, maskTiles, plan, g, layout, options);
      }),
    );
    let attended: tf.Tensor;
    if (layouts.length === 1 && layouts[0]!.identity) {
      attended = outputs[0]!;
    } else {
      // Where each query block of the table ended up among the groups' outputs, laid end to end.
      const from = new Int32Array(batch * kvHeads * queryBlocks);
      let at = 0;
      for (const layout of layouts) for (const row of layout.queryRows) from[row] = at++;
      attended = gatherRows(tf.concat(outputs, 0), tf.tensor1d(from, 'int32'));
    }
    let merged = tf.slice(tf.reshape(attended, [batch, kvHeads, queryBlocks * qb, group * valueDim]), 0, [
      batch,
      kvHeads,
      queries,
      group * valueDim,
    ]);
    merged = tf.reshape(tf.transpose(merged, [0, 2, 1, 3]), [batch, queries, heads * valueDim]);
    if (plan.alive !== undefined) merged = tf.mul(merged, tf.tensor3d(plan.alive, [plan.rows, queries, 1]));
    return merged;
  });
}

/** Tiles {@link blockAttention} computes over `batch` rows: every row's when the plan is shared. */
function computedTiles(plan: BlockPlan, batch: number): number {
  return plan.rows === 1 ? batch * plan.computedTiles : plan.computedTiles;
}

/**
 * The keys and values {@link blockAttention} gathers, in bytes (float32): every slot it computes,
 * the sentinels padding each group included.
 */
export function gatheredBytes(plan: BlockPlan, batch: number, options: BlockAttentionOptions): number {
  return (
    4 * computedTiles(plan, batch) * options.numKvHeads * plan.blockSize * (options.keyDim + options.valueDim)
  );
}

/**
 * FLOPs of the tiles {@link blockAttention} computes (a multiply-add counts 2), over `batch` rows:
 * per tile (kept ones and each group's sentinel padding) and query head, the scores and the
 * weighted sum, the softmax (5 per score), the mask and each score modifier (2 per score); plus
 * scaling the queries.
 */
export function keptTileFlops(plan: BlockPlan, batch: number, options: BlockAttentionOptions): number {
  const perScore = 2 * options.keyDim + 2 * options.valueDim + 5 + 1 + 2 * options.scoreMods.length;
  return (
    computedTiles(plan, batch) * options.numHeads * plan.queryBlockSize * plan.blockSize * perScore +
    batch * plan.queries * options.numHeads * options.keyDim
  );
}
