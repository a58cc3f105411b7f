import {
  type Pattern,
  type PatternScope,
  pairKept,
  patternNeeds,
  patternScope,
  tileKept,
} from './pattern.js';
import { MASKED_SCORE } from './routing-attention.js';

/** What a plan is made from: the pattern, the sequence and, per batch row, the data it reads. */
export interface PlanRequest {
  /** The pattern (validated). */
  pattern: Pattern;
  /** Keys per block (the layer's `blockSize`; block layouts count in it too). */
  blockSize: number;
  /** Queries of this call: the last `queries` of the keys' positions. */
  queries: number;
  /** Keys of this call (cached ones first in a session). */
  keys: number;
  /** Absolute position of the first key (in a session, the first cached one); default 0. */
  keyStart?: number;
  /** Batch rows the data below covers (default 1). */
  rows?: number;
  /** Per row and key, 1 for a token and 0 for padding (`[rows, keys]`); absent: no padding. */
  padding?: ArrayLike<number>;
  /** Per row and key, the document id (`[rows, keys]`), for `document` patterns. */
  documents?: Int32Array;
  /** Per row, the prefix length, for `prefix-lm` patterns without a fixed prefix. */
  prefix?: ArrayLike<number>;
}

/**
 * Query blocks computed together: each gathers its first `kept` slots, so a query block whose list
 * is shorter computes sentinel tiles up to the group's longest list.
 */
export interface PlanGroup {
  /** Slots each query block of the group gathers: the longest kept list among them. */
  kept: number;
  /** `row * queryBlocks + queryBlock` of each query block of the group, ascending. */
  units: Int32Array;
  /** Whether any of those slots needs a mask (a tile kept in part, or a sentinel). */
  masked: boolean;
}

/**
 * The host plan of one call: per batch row (or one for every row when nothing in it depends on
 * the data) and per query block, the key blocks it keeps, padded to the longest list with a
 * sentinel; the groups of query blocks computed together (lists of similar lengths, so a few long
 * lists do not make every query block compute as many tiles); and the additive masks of the tiles
 * kept only in part. Plain data: a decision the taped step replays.
 */
export interface BlockPlan {
  /** Keys per key block. */
  blockSize: number;
  /** Queries per query block: `min(blockSize, queries)`, so one decoded token is one small block. */
  queryBlockSize: number;
  /** Queries of the call. */
  queries: number;
  /** Keys of the call. */
  keys: number;
  /** Absolute position of the first key. */
  keyStart: number;
  /** `ceil(queries / queryBlockSize)`. */
  queryBlocks: number;
  /** `ceil(keys / blockSize)`; index `keyBlocks` is the sentinel (a zero block, fully masked). */
  keyBlocks: number;
  /** Key blocks gathered per query block (the longest kept list, at least 1). */
  kept: number;
  /** 1 when every batch row shares the plan, else the batch size. */
  rows: number;
  /** `[rows, queryBlocks, kept]`: key block of each slot, ascending, then sentinels. */
  slots: Int32Array;
  /** `[rows, queryBlocks, kept]`: index into `maskTiles` of each slot's mask (0: none needed). */
  slotMask: Int32Array;
  /**
   * `[tiles, queryBlockSize, blockSize]` additive masks (0 kept, {@link MASKED_SCORE} dropped):
   * tile 0 is all kept (full tiles), tile 1 all dropped (sentinels), then one per distinct mask of
   * a partly kept tile.
   */
  maskTiles: Float32Array;
  /** Whether any slot needs a mask (some tile partly kept, or a sentinel). */
  masked: boolean;
  /**
   * Every query block of every row in exactly one group, by the length of its kept list; one
   * group when the lists are (nearly) equal; at most 8 groups, padding at most an eighth more tiles.
   */
  groups: PlanGroup[];
  /**
   * `[rows, queries]`: 1 for a query that keeps at least one key, 0 for one that keeps none (a
   * padded query): its attention output is zero. Absent when every query keeps a key.
   */
  alive?: Float32Array;
  /** Tiles kept, summed over rows (what the attention computes that the pattern needs). */
  keptTiles: number;
  /** Of which kept only in part (they cost a full tile, with a mask). */
  partialTiles: number;
  /**
   * Tiles the kernel computes, summed over rows: each group's query blocks times its `kept`, so
   * kept tiles plus the sentinels padding each group (at least one tile per query block).
   */
  computedTiles: number;
  /** Tiles a dense attention would compute, summed over rows (`rows * queryBlocks * keyBlocks`). */
  denseTiles: number;
}

/** Whether a request depends on its batch rows' data (padding, documents, prefix lengths). */
function perRow(request: PlanRequest): boolean {
  const needs = patternNeeds(request.pattern);
  return request.padding !== undefined || needs.documents || needs.prefix;
}

/** Plans kept in memory, by pattern and sequence: static ones are made once per (n, blockSize). */
const cache = new Map<string, BlockPlan>();
/** Enough for the lengths of a training run and the steps of a few decoding sessions. */
const CACHE_SIZE = 64;

/**
 * Plans one call (see {@link BlockPlan}). A plan that depends on no data is cached by pattern,
 * block size and sequence, so a static pattern is planned once per sequence length.
 */
export function planBlocks(request: PlanRequest): BlockPlan {
  if (perRow(request)) return makePlan(request);
  const key = JSON.stringify([
    request.pattern,
    request.blockSize,
    request.queries,
    request.keys,
    request.keyStart ?? 0,
  ]);
  let plan = cache.get(key);
  if (plan === undefined) {
    plan = makePlan({ ...request, rows: 1 });
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
  } else {
    cache.delete(key);
  }
  cache.set(key, plan);
  return plan;
}

/** A kept tile of one query block: its key block and its mask tile. */
interface KeptTile {
  block: number;
  mask: number;
}

/** Distinct partial masks by content, so a diagonal repeated a thousand times is stored once. */
class MaskTiles {
  readonly tiles: Float32Array[];
  private readonly index = new Map<string, number>();

  constructor(size: number) {
    this.tiles = [new Float32Array(size), new Float32Array(size).fill(MASKED_SCORE)];
  }

  add(mask: Float32Array): number {
    let key = '';
    for (let i = 0; i < mask.length; i++) key += mask[i] === 0 ? '1' : '0';
    let at = this.index.get(key);
    if (at === undefined) {
      at = this.tiles.length;
      this.tiles.push(mask);
      this.index.set(key, at);
    }
    return at;
  }
}

function makePlan(request: PlanRequest): BlockPlan {
  const { pattern, blockSize: b, queries, keys } = request;
  if (queries > keys) throw new Error(`a plan needs queries (${queries}) <= keys (${keys})`);
  const keyStart = request.keyStart ?? 0;
  const rows = request.rows ?? 1;
  const qb = Math.max(1, Math.min(b, queries));
  const queryBlocks = Math.ceil(queries / qb);
  const keyBlocks = Math.ceil(keys / b);
  const queryStart = keyStart + keys - queries;
  const end = keyStart + keys;
  const masks = new MaskTiles(qb * b);
  const lists: KeptTile[][] = [];
  const alive = new Uint8Array(rows * queries);
  let keptTiles = 0;
  let partialTiles = 0;
  for (let r = 0; r < rows; r++) {
    const pad = request.padding;
    const token = (p: number) => pad === undefined || pad[r * keys + p - keyStart] !== 0;
    // Tokens before each position, so a range's padding class takes two lookups.
    const before = new Int32Array(keys + 1);
    for (let p = 0; p < keys; p++) before[p + 1] = before[p]! + (token(keyStart + p) ? 1 : 0);
    const tokensIn = (lo: number, hi: number) => before[hi - keyStart]! - before[lo - keyStart]!;
    const scope: PatternScope = patternScope({
      blockSize: b,
      length: end,
      start: keyStart,
      ...(request.documents ? { documents: request.documents.subarray(r * keys, (r + 1) * keys) } : {}),
      ...(request.prefix ? { prefix: request.prefix[r]! } : {}),
    });
    for (let q = 0; q < queryBlocks; q++) {
      const qLo = queryStart + q * qb;
      const qHi = Math.min(qLo + qb, end);
      const qTokens = tokensIn(qLo, qHi);
      const list: KeptTile[] = [];
      for (let k = 0; k < keyBlocks; k++) {
        const kLo = keyStart + k * b;
        const kHi = Math.min(kLo + b, end);
        const kTokens = tokensIn(kLo, kHi);
        if (qTokens === 0 || kTokens === 0) continue;
        let kind = tileKept(pattern, scope, qLo, qHi, kLo, kHi);
        if (kind === 'none') continue;
        // Padding, or keys past the end of the sequence in the last block, leave the tile partial.
        if (kind === 'all' && (qTokens < qHi - qLo || kTokens < b)) kind = 'some';
        if (kind === 'all') {
          list.push({ block: k, mask: 0 });
          alive.fill(1, r * queries + qLo - queryStart, r * queries + qHi - queryStart);
          continue;
        }
        const mask = new Float32Array(qb * b).fill(MASKED_SCORE);
        let pairs = 0;
        for (let i = qLo; i < qHi; i++) {
          if (!token(i)) continue;
          const row = (i - qLo) * b;
          let any = false;
          for (let j = kLo; j < kHi; j++) {
            if (token(j) && pairKept(pattern, scope, i, j)) {
              mask[row + j - kLo] = 0;
              any = true;
              pairs++;
            }
          }
          if (any) alive[r * queries + i - queryStart] = 1;
        }
        if (pairs === 0) continue;
        // Refined: a tile whose every pair is kept needs no mask after all.
        const full = pairs === (qHi - qLo) * b;
        list.push({ block: k, mask: full ? 0 : masks.add(mask) });
        if (!full) partialTiles++;
      }
      keptTiles += list.length;
      lists.push(list);
    }
  }
  const lengths = lists.map((l) => Math.max(1, l.length));
  const kept = Math.max(...lengths);
  const slots = new Int32Array(rows * queryBlocks * kept).fill(keyBlocks);
  const slotMask = new Int32Array(rows * queryBlocks * kept).fill(1);
  lists.forEach((list, at) => {
    list.forEach((tile, s) => {
      slots[at * kept + s] = tile.block;
      slotMask[at * kept + s] = tile.mask;
    });
  });
  const maskTiles = new Float32Array(masks.tiles.length * qb * b);
  masks.tiles.forEach((tile, t) => {
    maskTiles.set(tile, t * qb * b);
  });
  const groups = groupUnits(lengths).map((units) => {
    const groupKept = Math.max(...Array.from(units, (u) => lengths[u]!));
    let masked = false;
    for (const u of units) {
      for (let s = 0; s < groupKept; s++) masked ||= slotMask[u * kept + s] !== 0;
    }
    return { kept: groupKept, units, masked };
  });
  return {
    blockSize: b,
    queryBlockSize: qb,
    queries,
    keys,
    keyStart,
    queryBlocks,
    keyBlocks,
    kept,
    rows,
    slots,
    slotMask,
    maskTiles,
    masked: groups.some((g) => g.masked),
    groups,
    ...(alive.every((a) => a === 1) ? {} : { alive: Float32Array.from(alive) }),
    keptTiles,
    partialTiles,
    computedTiles: groups.reduce((sum, g) => sum + g.units.length * g.kept, 0),
    denseTiles: rows * queryBlocks * keyBlocks,
  };
}

/** Most groups a plan is cut into: each costs the kernel a dozen more ops (and shaders on webgl). */
export const MAX_GROUPS = 8;
/** Padding a plan may compute beyond its kept tiles before another group is worth its ops. */
const PADDING_ALLOWED = 1 / 8;

/**
 * Groups units (query blocks of a row) by the length of their kept lists: each group computes its
 * longest length for every unit in it, so the cut into ranges of lengths is chosen to pad little.
 * Returns the fewest groups (at most {@link MAX_GROUPS}) whose padding is within
 * {@link PADDING_ALLOWED} of the kept tiles, or the least padded cut into `MAX_GROUPS`: one group
 * when the lengths are (nearly) equal, as a window's are; a handful for `causal` (lengths 1 to
 * n / blockSize) or global blocks (one list of every block among short ones). Each group lists
 * its units in ascending order.
 */
function groupUnits(lengths: readonly number[]): Int32Array[] {
  // Distinct lengths ascending, and how many units have each: a group is a range of them.
  const counts = new Map<number, number>();
  for (const len of lengths) counts.set(len, (counts.get(len) ?? 0) + 1);
  const distinct = [...counts.keys()].sort((x, y) => x - y);
  const m = distinct.length;
  const before = [0];
  for (const len of distinct) before.push(before.at(-1)! + counts.get(len)!);
  const needed = lengths.reduce((sum, l) => sum + l, 0);
  // best[j]: least tiles computed for the first j + 1 lengths by the groups so far; cuts[g][j]:
  // where the range of group g starts in the best cut of those lengths (-1: group g unused).
  let best = distinct.map((len, j) => before[j + 1]! * len);
  const cuts: Int32Array[] = [new Int32Array(m)];
  while (best[m - 1]! > needed * (1 + PADDING_ALLOWED) && cuts.length < Math.min(MAX_GROUPS, m)) {
    const next = best.slice();
    const cut = new Int32Array(m).fill(-1);
    for (let j = 1; j < m; j++) {
      for (let i = 1; i <= j; i++) {
        const cost = best[i - 1]! + (before[j + 1]! - before[i]!) * distinct[j]!;
        if (cost < next[j]!) {
          next[j] = cost;
          cut[j] = i;
        }
      }
    }
    best = next;
    cuts.push(cut);
  }
  // Walks the cuts back from the longest length: the range of distinct lengths of each group.
  const groupOf = new Map<number, number>();
  let end = m - 1;
  for (let g = cuts.length - 1; g >= 0 && end >= 0; g--) {
    const start = cuts[g]![end]!;
    if (start < 0) continue;
    for (let j = start; j <= end; j++) groupOf.set(distinct[j]!, g);
    end = start - 1;
  }
  const members = Array.from({ length: cuts.length }, () => [] as number[]);
  lengths.forEach((len, u) => {
    members[groupOf.get(len)!]!.push(u);
  });
  return members.filter((units) => units.length > 0).map((units) => Int32Array.from(units));
}
