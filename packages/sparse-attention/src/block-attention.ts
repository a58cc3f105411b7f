import { batchMatMul, gatherRows } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import type { BlockPlan } from './block-plan.js';
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
 * The rows of the key (or value) block table to gather: for each batch row, key/value head, query
 * block and slot, `(b * kvHeads + h) * (keyBlocks + 1) + slot`.
 */
function gatherIndices(plan: BlockPlan, batch: number, kvHeads: number): Int32Array {
  const { queryBlocks, kept, keyBlocks } = plan;
  const perRow = queryBlocks * kept;
  const out = new Int32Array(batch * kvHeads * perRow);
  for (let b = 0; b < batch; b++) {
    const row = plan.rows === 1 ? 0 : b;
    for (let h = 0; h < kvHeads; h++) {
      const base = (b * kvHeads + h) * (keyBlocks + 1);
      const at = (b * kvHeads + h) * perRow;
      for (let s = 0; s < perRow; s++) out[at + s] = base + plan.slots[row * perRow + s]!;
    }
  }
  return out;
}

/**
 * `x` `[batch, kvHeads, keys, dim]` cut into blocks, each query block's kept blocks gathered:
 * `[batch * kvHeads * queryBlocks, kept * blockSize, dim]`. The table has one zero block more
 * than the keys fill, the sentinel's.
 */
function gatherBlocks(x: tf.Tensor, plan: BlockPlan, indices: tf.Tensor): tf.Tensor3D {
  const [batch, kvHeads, , dim] = x.shape as [number, number, number, number];
  const { blockSize: b, keyBlocks, queryBlocks, kept } = plan;
  const table = tf.reshape(padTime(x, (keyBlocks + 1) * b), [batch * kvHeads * (keyBlocks + 1), b * dim]);
  return tf.reshape(gatherRows(table, indices), [batch * kvHeads * queryBlocks, kept * b, dim]);
}

/**
 * Absolute positions of the queries `[queryBlocks * queryBlockSize]` (past the last query they
 * continue) and of the gathered keys `[rows, queryBlocks, kept * blockSize]`.
 */
function positions(plan: BlockPlan): { query: Int32Array; key: Int32Array } {
  const { blockSize: b, queryBlockSize: qb, queryBlocks, kept, rows, keyStart } = plan;
  const queryStart = keyStart + plan.keys - plan.queries;
  const query = Int32Array.from({ length: queryBlocks * qb }, (_, i) => queryStart + i);
  const key = new Int32Array(rows * queryBlocks * kept * b);
  for (let s = 0; s < rows * queryBlocks * kept; s++) {
    for (let t = 0; t < b; t++) key[s * b + t] = keyStart + plan.slots[s]! * b + t;
  }
  return { query, key };
}

/** Key minus query position of every pair, `[rows, queryBlocks, queryBlockSize, kept * blockSize]` int32, and its range. */
function relativePositions(plan: BlockPlan): { relative: tf.Tensor; least: number; most: number } {
  const { rows, queryBlocks, queryBlockSize: qb, kept, blockSize: b } = plan;
  const { query, key } = positions(plan);
  let [lowest, highest] = [key[0]!, key[0]!];
  for (const p of key) [lowest, highest] = [Math.min(lowest, p), Math.max(highest, p)];
  const relative = tf.sub(
    tf.reshape(tf.tensor1d(key, 'int32'), [rows, queryBlocks, 1, kept * b]),
    tf.reshape(tf.tensor1d(query, 'int32'), [1, queryBlocks, qb, 1]),
  );
  return { relative, least: lowest - query.at(-1)!, most: highest - query[0]! };
}

/**
 * What an additive score modifier adds, shaped `[rows, kvHeads, queryBlocks * queryBlockSize,
 * group, kept * blockSize]` to broadcast over the scores.
 */
function modBias(
  mod: Exclude<ScoreMod, { type: 'softcap' }>,
  pairs: ReturnType<typeof relativePositions>,
  plan: BlockPlan,
  options: BlockAttentionOptions,
): tf.Tensor {
  const { numHeads: heads, numKvHeads: kvHeads } = options;
  const group = heads / kvHeads;
  const { rows, queryBlocks, queryBlockSize: qb, kept, blockSize: b } = plan;
  const { relative, least, most } = pairs;
  if (mod.type === 'alibi') {
    const distance = tf.reshape(tf.abs(tf.cast(relative, 'float32')), [
      rows,
      1,
      queryBlocks * qb,
      1,
      kept * b,
    ]);
    const slopes = alibiSlopes(heads).map((s) => -s);
    return tf.mul(distance, tf.reshape(tf.tensor1d(slopes), [1, kvHeads, 1, group, 1]));
  }
  // The bucket of every relative position this call meets, as a table gathered per pair.
  const buckets = Int32Array.from({ length: most - least + 1 }, (_, r) =>
    relativeBucket(least + r, mod.buckets, mod.maxDistance, mod.bidirectional),
  );
  const ids = gatherRows(
    tf.tensor1d(buckets, 'int32'),
    tf.reshape(tf.sub(relative, tf.scalar(least, 'int32')), [-1]),
  );
  // [pairs, heads] -> [rows, kvHeads, queries, group, keys].
  const perPair = tf.reshape(gatherRows(options.relativeBias!, ids), [
    rows,
    queryBlocks * qb,
    kept * b,
    kvHeads,
    group,
  ]);
  return tf.transpose(perPair, [0, 3, 1, 4, 2]);
}

/**
 * The additive mask `[rows, 1, queryBlocks * queryBlockSize, 1, kept * blockSize]`: each slot's
 * tile gathered from the plan's distinct tiles (`gatherRows`: wasm's gatherND is ~10x faster than
 * its Gather).
 */
function planMask(plan: BlockPlan): tf.Tensor {
  const { rows, queryBlocks, queryBlockSize: qb, kept, blockSize: b } = plan;
  const tiles = tf.tensor2d(plan.maskTiles, [plan.maskTiles.length / (qb * b), qb * b]);
  const perSlot = gatherRows(tiles, tf.tensor1d(plan.slotMask, 'int32'));
  return tf.reshape(tf.transpose(tf.reshape(perSlot, [rows, queryBlocks, kept, qb, b]), [0, 1, 3, 2, 4]), [
    rows,
    1,
    queryBlocks * qb,
    1,
    kept * b,
  ]);
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
  const { queries, queryBlocks, queryBlockSize: qb, kept, blockSize: b } = plan;
  return tf.tidy(() => {
    const indices = tf.tensor1d(gatherIndices(plan, batch, kvHeads), 'int32');
    // Queries [batch * kvHeads * queryBlocks, qb * group, keyDim]: a block's rows, query-major.
    const qHeads = tf.transpose(tf.reshape(q, [batch, queries, kvHeads, group * keyDim]), [0, 2, 1, 3]);
    const qBlocks = tf.reshape(tf.mul(padTime(qHeads, queryBlocks * qb), 1 / Math.sqrt(keyDim)), [
      batch * kvHeads * queryBlocks,
      qb * group,
      keyDim,
    ]);
    const keysT = tf.transpose(gatherBlocks(k, plan, indices), [0, 2, 1]) as tf.Tensor3D;
    let scores: tf.Tensor = batchMatMul(qBlocks as tf.Tensor3D, keysT);
    // Seen as [batch, kvHeads, queries (padded), group, kept keys] to broadcast per-pair terms.
    scores = tf.reshape(scores, [batch, kvHeads, queryBlocks * qb, group, kept * b]);
    let pairs: ReturnType<typeof relativePositions> | undefined;
    for (const mod of options.scoreMods) {
      if (mod.type === 'softcap') {
        scores = tf.mul(tf.tanh(tf.div(scores, mod.cap)), mod.cap);
      } else {
        pairs ??= relativePositions(plan);
        scores = tf.add(scores, modBias(mod, pairs, plan, options));
      }
    }
    if (plan.masked) scores = tf.add(scores, planMask(plan));
    const probs = tf.reshape(tf.softmax(scores), [batch * kvHeads * queryBlocks, qb * group, kept * b]);
    const attended = batchMatMul(probs as tf.Tensor3D, gatherBlocks(v, plan, indices));
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

/** The keys and values {@link blockAttention} gathers, in bytes (float32), sentinel slots included. */
export function gatheredBytes(plan: BlockPlan, batch: number, options: BlockAttentionOptions): number {
  return (
    4 *
    batch *
    options.numKvHeads *
    plan.queryBlocks *
    plan.kept *
    plan.blockSize *
    (options.keyDim + options.valueDim)
  );
}

/**
 * FLOPs of the attention the kept tiles cost (a multiply-add counts 2), over `batch` rows: per
 * tile and query head, the scores and the weighted sum, the softmax (5 per score), the mask and
 * each score modifier (2 per score); plus scaling the queries.
 */
export function keptTileFlops(plan: BlockPlan, batch: number, options: BlockAttentionOptions): number {
  const perScore = 2 * options.keyDim + 2 * options.valueDim + 5 + 1 + 2 * options.scoreMods.length;
  const tiles = plan.rows === 1 ? batch * plan.keptTiles : plan.keptTiles;
  return (
    tiles * options.numHeads * plan.queryBlockSize * plan.blockSize * perScore +
    batch * plan.queries * options.numHeads * options.keyDim
  );
}
