import { createRng, DynnError, seedFor } from '@dynn/core';

/**
 * Which query-key pairs an attention layer keeps, as a JSON expression saved with the model (no
 * code in a model file). Positions are absolute: query `i` and key `j` count from the start of the
 * sequence (in a session, from the first run). The block layouts count in blocks of the layer's
 * `blockSize`, block `b` holding positions `[b * blockSize, (b + 1) * blockSize)`.
 *
 * - `full`: every pair.
 * - `causal`: `j <= i`.
 * - `window`: `i - before <= j <= i + after` (look-back and look-ahead; `after: 0` is causal).
 * - `dilated`: the window's keys `j` with `i - j` a multiple of `dilation` (Longformer's dilated
 *   sliding window, spanning `before` / `after` positions).
 * - `global`: the listed positions attend to every key and every query attends to them; positions
 *   past the end of a sequence are ignored.
 * - `random`: `blocks` key blocks per query block, drawn without replacement among the sequence's
 *   blocks from `seed` and the query block's index (the same for a given length).
 * - `fixed` (DeepSpeed's Fixed, bidirectional, vertical global attention): blocks are grouped in
 *   windows of `localBlocks`; a query block keeps its window's key blocks and, in every window,
 *   the last `globalBlocks` ("summary" blocks; a short last window's are the sequence's last).
 * - `bigbird` (DeepSpeed's BigBird, bidirectional): a sliding window of `windowBlocks` blocks
 *   centred on the query block (`|qb - kb| <= floor(windowBlocks / 2)`), the first `globalBlocks`
 *   blocks attending and attended by all, and `randomBlocks` random key blocks per query block.
 * - `longformer` (DeepSpeed's BSLongformer): the sliding block window, and the blocks listed in
 *   `globalBlocks` attending and attended by all.
 * - `variable` (DeepSpeed's Variable, vertical global attention): blocks grouped in windows of
 *   `localWindows[0]`, `localWindows[1]`, ... blocks, the last size repeated; a query block keeps
 *   its window, and every query keeps the blocks listed in `globalBlocks`.
 * - `document`: `j` and `i` in the same document (same id in the layer's document-ids input).
 * - `prefix-lm`: `j < prefix` or `j <= i`: bidirectional within the prefix, causal after it;
 *   without `prefix`, each batch row's prefix length comes from the layer's prefix input.
 * - `and` / `or`: pairs kept by every / by some pattern of `of`.
 *
 * A padding mask applies inside every pattern: a padded key is never attended, and a padded
 * query keeps no key.
 */
export type Pattern =
  | {
      /** Every pair. */
      type: 'full';
    }
  | {
      /** `j <= i`. */
      type: 'causal';
    }
  | {
      /** `i - before <= j <= i + after`. */
      type: 'window';
      /** Positions looked back. */
      before: number;
      /** Positions looked ahead (0: causal). */
      after: number;
    }
  | {
      /** The window's keys with `i - j` a multiple of `dilation`. */
      type: 'dilated';
      /** Positions looked back. */
      before: number;
      /** Positions looked ahead. */
      after: number;
      /** Stride between kept keys. */
      dilation: number;
    }
  | {
      /** The listed positions attend to all and are attended by all. */
      type: 'global';
      /** Global positions. */
      tokens: number[];
    }
  | {
      /** Random key blocks per query block. */
      type: 'random';
      /** Key blocks drawn per query block. */
      blocks: number;
      /** Seed of the draws. */
      seed: number;
    }
  | {
      /** DeepSpeed's Fixed layout. */
      type: 'fixed';
      /** Blocks per local window. */
      localBlocks: number;
      /** Summary blocks at the end of each window. */
      globalBlocks: number;
    }
  | {
      /** DeepSpeed's BigBird layout. */
      type: 'bigbird';
      /** Blocks of the sliding window, centred on the query block. */
      windowBlocks: number;
      /** The first blocks, attending and attended by all. */
      globalBlocks: number;
      /** Random key blocks per query block. */
      randomBlocks: number;
      /** Seed of the random blocks. */
      seed: number;
    }
  | {
      /** DeepSpeed's BSLongformer layout. */
      type: 'longformer';
      /** Blocks of the sliding window, centred on the query block. */
      windowBlocks: number;
      /** Blocks attending and attended by all. */
      globalBlocks: number[];
    }
  | {
      /** DeepSpeed's Variable layout. */
      type: 'variable';
      /** Sizes of the local windows in blocks, the last repeated. */
      localWindows: number[];
      /** Blocks every query attends to. */
      globalBlocks: number[];
    }
  | {
      /** Same document id (the document-ids input). */
      type: 'document';
    }
  | {
      /** `j < prefix` or `j <= i`. */
      type: 'prefix-lm';
      /** Prefix length; absent: each row's from the prefix input. */
      prefix?: number;
    }
  | {
      /** Pairs every part keeps. */
      type: 'and';
      /** The parts. */
      of: Pattern[];
    }
  | {
      /** Pairs some part keeps. */
      type: 'or';
      /** The parts. */
      of: Pattern[];
    };

/** The `type` of every pattern. */
export type PatternType = Pattern['type'];

/** Whether a tile (a range of queries by a range of keys) keeps all, some or none of its pairs. */
export type TileClass = 'all' | 'some' | 'none';

/** What a field of a pattern must hold. */
type FieldKind = 'count' | 'positive' | 'seed' | 'counts' | 'positives' | 'patterns';

/** Each pattern's fields, what they hold, and which are optional; with one line on its meaning. */
const FIELDS: Record<PatternType, { fields: Record<string, FieldKind>; optional?: string[]; means: string }> =
  {
    full: { fields: {}, means: 'every pair' },
    causal: { fields: {}, means: 'key j <= query i' },
    window: { fields: { before: 'count', after: 'count' }, means: 'i - before <= j <= i + after' },
    dilated: {
      fields: { before: 'count', after: 'count', dilation: 'positive' },
      means: 'the window with i - j a multiple of dilation',
    },
    global: {
      fields: { tokens: 'counts' },
      means: 'the listed positions attend to all and are attended by all',
    },
    random: { fields: { blocks: 'count', seed: 'seed' }, means: 'random key blocks per query block' },
    fixed: {
      fields: { localBlocks: 'positive', globalBlocks: 'count' },
      means: 'windows of localBlocks blocks plus the last globalBlocks of each window',
    },
    bigbird: {
      fields: { windowBlocks: 'positive', globalBlocks: 'count', randomBlocks: 'count', seed: 'seed' },
      means: 'a sliding block window, the first globalBlocks blocks global, random blocks',
    },
    longformer: {
      fields: { windowBlocks: 'positive', globalBlocks: 'counts' },
      means: 'a sliding block window and the listed global blocks',
    },
    variable: {
      fields: { localWindows: 'positives', globalBlocks: 'counts' },
      means: 'windows of the listed block counts, the last repeated, and the listed global blocks',
    },
    document: { fields: {}, means: 'query and key in the same document' },
    'prefix-lm': {
      fields: { prefix: 'count' },
      optional: ['prefix'],
      means: 'j < prefix or j <= i',
    },
    and: { fields: { of: 'patterns' }, means: 'pairs every pattern keeps' },
    or: { fields: { of: 'patterns' }, means: 'pairs some pattern keeps' },
  };

/** Every pattern type, in the order the documentation lists them. */
export const PATTERN_TYPES = Object.keys(FIELDS) as readonly PatternType[];

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function fieldProblem(value: unknown, kind: FieldKind, where: string): string | undefined {
  switch (kind) {
    case 'count':
      return isInt(value) && value >= 0 ? undefined : `${where} must be an integer >= 0, got ${show(value)}`;
    case 'positive':
      return isInt(value) && value >= 1 ? undefined : `${where} must be an integer >= 1, got ${show(value)}`;
    case 'seed':
      return isInt(value) ? undefined : `${where} must be an integer seed, got ${show(value)}`;
    case 'counts':
    case 'positives': {
      if (!Array.isArray(value)) return `${where} must be an array of integers, got ${show(value)}`;
      const least = kind === 'counts' ? 0 : 1;
      const bad = value.findIndex((v) => !isInt(v) || v < least);
      if (bad >= 0) return `${where}[${bad}] must be an integer >= ${least}, got ${show(value[bad])}`;
      if (kind === 'positives' && value.length === 0) return `${where} must list at least one window size`;
      return undefined;
    }
    case 'patterns': {
      if (!Array.isArray(value) || value.length === 0) {
        return `${where} must be a non-empty array of patterns, got ${show(value)}`;
      }
      for (const [i, item] of value.entries()) {
        const problem = patternProblem(item, `${where}[${i}]`);
        if (problem) return problem;
      }
      return undefined;
    }
  }
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * What is wrong with a pattern, naming the field (`pattern.of[1].before`) and what it needs, or
 * undefined when it is a valid {@link Pattern}.
 */
export function patternProblem(value: unknown, where = 'pattern'): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `${where} must be an object such as {"type": "causal"}, got ${show(value)}`;
  }
  const record = value as Record<string, unknown>;
  const type = record.type;
  if (typeof type !== 'string' || !Object.hasOwn(FIELDS, type)) {
    return `${where}.type is ${show(type)}; expected one of ${PATTERN_TYPES.map((t) => `'${t}'`).join(', ')}`;
  }
  const spec = FIELDS[type as PatternType];
  const names = Object.keys(spec.fields);
  for (const key of Object.keys(record)) {
    if (key !== 'type' && !names.includes(key)) {
      return `${where}.${key} is not a field of a '${type}' pattern (${spec.means}); its fields: ${names.join(', ') || 'none'}`;
    }
  }
  for (const [name, kind] of Object.entries(spec.fields)) {
    if (record[name] === undefined) {
      if (spec.optional?.includes(name)) continue;
      return `${where}.${name} is missing: a '${type}' pattern (${spec.means}) needs ${names.join(', ')}`;
    }
    const problem = fieldProblem(record[name], kind, `${where}.${name}`);
    if (problem) return problem;
  }
  if (type === 'fixed' && (record.globalBlocks as number) > (record.localBlocks as number)) {
    return `${where}.globalBlocks (${record.globalBlocks}) must not exceed localBlocks (${record.localBlocks}): the summary blocks are the last blocks of each window`;
  }
  return undefined;
}

/**
 * Checks that `value` is a valid {@link Pattern} and returns it typed. Throws an `INVALID_ATTR`
 * {@link DynnError} naming the bad field and what it needs otherwise.
 */
export function validatePattern(value: unknown, where = 'pattern'): Pattern {
  const problem = patternProblem(value, where);
  if (problem) throw new DynnError('INVALID_ATTR', `${problem}.`);
  return value as Pattern;
}

/** What the pattern needs from one batch row's data, and the sequence it is evaluated on. */
export interface PatternScope {
  /** The block size block layouts count in. */
  blockSize: number;
  /** Positions `[0, length)` exist: random blocks are drawn among `ceil(length / blockSize)` blocks. */
  length: number;
  /** The absolute position of `documents[0]`. */
  start: number;
  /** Document id of each position from `start` on (`document` patterns). */
  documents?: Int32Array;
  /** The row's prefix length (`prefix-lm` patterns without a fixed prefix). */
  prefix?: number;
  /** Memoised random block sets and document id sets; {@link patternScope} makes it. */
  readonly cache: Map<string, unknown>;
}

/** A {@link PatternScope} with its own memo. */
export function patternScope(scope: Omit<PatternScope, 'cache'>): PatternScope {
  return { ...scope, cache: new Map() };
}

/**
 * The `count` random key blocks of query block `queryBlock` among `keyBlocks` blocks (all of them
 * when `count >= keyBlocks`): a partial Fisher-Yates shuffle of `0..keyBlocks-1` drawn from `seed`
 * and the query block's index, so the same sequence length gives the same blocks.
 */
export function randomKeyBlocks(
  seed: number,
  count: number,
  queryBlock: number,
  keyBlocks: number,
): Set<number> {
  const rng = createRng(seedFor(seed, `block ${queryBlock}`));
  // Swaps kept sparse: only the touched entries of the shuffled array are stored.
  const swapped = new Map<number, number>();
  const set = new Set<number>();
  for (let i = 0; i < Math.min(count, keyBlocks); i++) {
    const j = i + rng.int(keyBlocks - i);
    set.add(swapped.get(j) ?? j);
    swapped.set(j, swapped.get(i) ?? i);
  }
  return set;
}

/** {@link randomKeyBlocks} among the scope's blocks, memoised in the scope. */
function randomBlocks(
  scope: PatternScope,
  seed: number,
  count: number,
  queryBlock: number,
): ReadonlySet<number> {
  const key = `random:${seed}:${count}:${queryBlock}`;
  let set = scope.cache.get(key) as Set<number> | undefined;
  if (set === undefined) {
    set = randomKeyBlocks(seed, count, queryBlock, Math.ceil(scope.length / scope.blockSize));
    scope.cache.set(key, set);
  }
  return set;
}

/**
 * Whether key block `kb` is a summary block of a `fixed` layout of `blocks` blocks, as DeepSpeed
 * sets them: the last `global` blocks of every full window, and when the last window is short,
 * the last `global` blocks of the sequence.
 */
function fixedSummary(local: number, global: number, blocks: number, kb: number): boolean {
  const end = blocks - (blocks % local);
  if (kb < end && kb % local >= local - global) return true;
  return end < blocks && kb >= blocks - global;
}

/** The window (0-based) a block belongs to, for windows of the listed sizes, the last repeated. */
function variableWindow(sizes: readonly number[], block: number): number {
  let start = 0;
  for (let w = 0; w < sizes.length; w++) {
    if (block < start + sizes[w]!) return w;
    start += sizes[w]!;
  }
  return sizes.length + Math.floor((block - start) / sizes.at(-1)!);
}

/** Whether key block `kb` is kept for query block `qb` by a block-layout pattern. */
function blockKept(p: Pattern, scope: PatternScope, qb: number, kb: number): boolean {
  switch (p.type) {
    case 'random':
      return randomBlocks(scope, p.seed, p.blocks, qb).has(kb);
    case 'fixed':
      return (
        Math.floor(qb / p.localBlocks) === Math.floor(kb / p.localBlocks) ||
        fixedSummary(p.localBlocks, p.globalBlocks, Math.ceil(scope.length / scope.blockSize), kb)
      );
    case 'bigbird':
      return (
        Math.abs(qb - kb) <= Math.floor(p.windowBlocks / 2) ||
        qb < p.globalBlocks ||
        kb < p.globalBlocks ||
        randomBlocks(scope, p.seed, p.randomBlocks, qb).has(kb)
      );
    case 'longformer':
      return (
        Math.abs(qb - kb) <= Math.floor(p.windowBlocks / 2) ||
        p.globalBlocks.includes(qb) ||
        p.globalBlocks.includes(kb)
      );
    case 'variable':
      return (
        variableWindow(p.localWindows, qb) === variableWindow(p.localWindows, kb) ||
        p.globalBlocks.includes(kb)
      );
    default:
      throw new Error(`'${p.type}' is not a block layout`);
  }
}

/** The class of a tile for a block layout: every block pair it touches, kept or not. */
function blockTile(p: Pattern, scope: PatternScope, qLo: number, qHi: number, kLo: number, kHi: number) {
  const b = scope.blockSize;
  let kept = 0;
  let total = 0;
  for (let qb = Math.floor(qLo / b); qb <= Math.floor((qHi - 1) / b); qb++) {
    for (let kb = Math.floor(kLo / b); kb <= Math.floor((kHi - 1) / b); kb++) {
      total++;
      if (blockKept(p, scope, qb, kb)) kept++;
    }
  }
  return kept === 0 ? 'none' : kept === total ? 'all' : 'some';
}

/** The class of a tile where a pair is kept iff `lo <= i - j <= hi`. */
function differenceTile(qLo: number, qHi: number, kLo: number, kHi: number, lo: number, hi: number) {
  const dMin = qLo - (kHi - 1);
  const dMax = qHi - 1 - kLo;
  if (dMax < lo || dMin > hi) return 'none';
  return dMin >= lo && dMax <= hi ? 'all' : 'some';
}

function prefixOf(p: Extract<Pattern, { type: 'prefix-lm' }>, scope: PatternScope): number {
  const prefix = p.prefix ?? scope.prefix;
  if (prefix === undefined) {
    throw new Error(
      "a 'prefix-lm' pattern without a prefix needs each row's prefix length (the prefix input)",
    );
  }
  return prefix;
}

function documentOf(scope: PatternScope, position: number): number {
  if (scope.documents === undefined) {
    throw new Error("a 'document' pattern needs each position's document id (the document-ids input)");
  }
  return scope.documents[position - scope.start]!;
}

/** The sorted distinct document ids of positions `[lo, hi)`. */
function documentsIn(scope: PatternScope, lo: number, hi: number): Int32Array {
  const key = `documents:${lo}:${hi}`;
  let ids = scope.cache.get(key) as Int32Array | undefined;
  if (ids === undefined) {
    const set = new Set<number>();
    for (let p = lo; p < hi; p++) set.add(documentOf(scope, p));
    ids = Int32Array.from(set).sort();
    scope.cache.set(key, ids);
  }
  return ids;
}

/** Whether the pattern keeps the pair (query `i`, key `j`), absolute positions. */
export function pairKept(p: Pattern, scope: PatternScope, i: number, j: number): boolean {
  switch (p.type) {
    case 'full':
      return true;
    case 'causal':
      return j <= i;
    case 'window':
      return i - p.before <= j && j <= i + p.after;
    case 'dilated':
      return i - p.before <= j && j <= i + p.after && (i - j) % p.dilation === 0;
    case 'global':
      return p.tokens.includes(i) || p.tokens.includes(j);
    case 'random':
    case 'fixed':
    case 'bigbird':
    case 'longformer':
    case 'variable':
      return blockKept(p, scope, Math.floor(i / scope.blockSize), Math.floor(j / scope.blockSize));
    case 'document':
      return documentOf(scope, i) === documentOf(scope, j);
    case 'prefix-lm':
      return j < prefixOf(p, scope) || j <= i;
    case 'and':
      return p.of.every((q) => pairKept(q, scope, i, j));
    case 'or':
      return p.of.some((q) => pairKept(q, scope, i, j));
  }
}

/**
 * Whether the pattern keeps all, some or none of the pairs of queries `[qLo, qHi)` by keys
 * `[kLo, kHi)` (absolute positions, non-empty ranges). Exact for every primitive except
 * `dilated` (`'some'` when the tile holds a kept pair and a dropped one, or when the dilation
 * leaves it empty); `and` / `or` may say `'some'` for a tile their parts split differently: a
 * plan refines `'some'` tiles pair by pair.
 */
export function tileKept(
  p: Pattern,
  scope: PatternScope,
  qLo: number,
  qHi: number,
  kLo: number,
  kHi: number,
): TileClass {
  switch (p.type) {
    case 'full':
      return 'all';
    case 'causal':
      return differenceTile(qLo, qHi, kLo, kHi, 0, Infinity);
    case 'window':
      return differenceTile(qLo, qHi, kLo, kHi, -p.after, p.before);
    case 'dilated': {
      const window = differenceTile(qLo, qHi, kLo, kHi, -p.after, p.before);
      if (window === 'none' || p.dilation === 1) return window;
      return qHi - qLo === 1 && kHi - kLo === 1 ? (pairKept(p, scope, qLo, kLo) ? 'all' : 'none') : 'some';
    }
    case 'global': {
      const within = (lo: number, hi: number) => new Set(p.tokens.filter((t) => t >= lo && t < hi)).size;
      const queries = within(qLo, qHi);
      const keys = within(kLo, kHi);
      // Every pair is kept iff every query is global or every key is.
      if (queries === qHi - qLo || keys === kHi - kLo) return 'all';
      return queries + keys === 0 ? 'none' : 'some';
    }
    case 'random':
    case 'fixed':
    case 'bigbird':
    case 'longformer':
    case 'variable':
      return blockTile(p, scope, qLo, qHi, kLo, kHi);
    case 'document': {
      const q = documentsIn(scope, qLo, qHi);
      const k = documentsIn(scope, kLo, kHi);
      if (q.length === 1 && k.length === 1) return q[0] === k[0] ? 'all' : 'none';
      return q.some((id) => k.includes(id)) ? 'some' : 'none';
    }
    case 'prefix-lm': {
      const prefix = prefixOf(p, scope);
      if (kHi - 1 < prefix || kHi - 1 <= qLo) return 'all';
      return kLo >= prefix && kLo > qHi - 1 ? 'none' : 'some';
    }
    case 'and': {
      let all = true;
      for (const q of p.of) {
        const c = tileKept(q, scope, qLo, qHi, kLo, kHi);
        if (c === 'none') return 'none';
        if (c === 'some') all = false;
      }
      return all ? 'all' : 'some';
    }
    case 'or': {
      let none = true;
      for (const q of p.of) {
        const c = tileKept(q, scope, qLo, qHi, kLo, kHi);
        if (c === 'all') return 'all';
        if (c === 'some') none = false;
      }
      return none ? 'none' : 'some';
    }
  }
}

/** The patterns a pattern is made of, itself included (depth first). */
function parts(p: Pattern): Pattern[] {
  return p.type === 'and' || p.type === 'or' ? [p, ...p.of.flatMap(parts)] : [p];
}

/** What a pattern reads from a layer's optional inputs. */
export interface PatternNeeds {
  /** Each position's document id (a `document` pattern). */
  documents: boolean;
  /** Each row's prefix length (a `prefix-lm` pattern without `prefix`). */
  prefix: boolean;
}

/** Which data-dependent inputs a pattern reads. */
export function patternNeeds(p: Pattern): PatternNeeds {
  const all = parts(p);
  return {
    documents: all.some((q) => q.type === 'document'),
    prefix: all.some((q) => q.type === 'prefix-lm' && q.prefix === undefined),
  };
}

/**
 * The pattern with its data-dependent parts (`document`, `prefix-lm` without a prefix) replaced
 * by `full`: it keeps every pair the pattern may keep for some data, since `and` and `or` keep
 * more when a part keeps more. What a static cost (FLOPs before any data is seen) counts.
 */
export function patternUpperBound(p: Pattern): Pattern {
  if (p.type === 'and' || p.type === 'or') return { type: p.type, of: p.of.map(patternUpperBound) };
  if (p.type === 'document' || (p.type === 'prefix-lm' && p.prefix === undefined)) return { type: 'full' };
  return p;
}

/**
 * How far back a query may look: the largest `i - j` of a kept pair, for every query to come, or
 * `Infinity`. A session keeps only the keys this reaches (the last `before` positions of a
 * look-back window).
 */
export function patternLookBack(p: Pattern): number {
  switch (p.type) {
    case 'window':
    case 'dilated':
      return p.before;
    case 'and':
      return Math.min(...p.of.map(patternLookBack));
    case 'or':
      return Math.max(...p.of.map(patternLookBack));
    default:
      return Number.POSITIVE_INFINITY;
  }
}

/**
 * Whether a query may keep a later key: `'none'` (the pattern is causal), `'prefix'` (only a
 * query inside a `prefix-lm` prefix keeps later keys of the prefix) or `'any'`. A session decodes
 * a pattern unless it is `'any'`: no query computed in an earlier run may need a key of a later one.
 */
export function patternLookAhead(p: Pattern): 'none' | 'prefix' | 'any' {
  const rank = { none: 0, prefix: 1, any: 2 } as const;
  const names = ['none', 'prefix', 'any'] as const;
  switch (p.type) {
    case 'causal':
      return 'none';
    case 'window':
    case 'dilated':
      return p.after === 0 ? 'none' : 'any';
    case 'prefix-lm':
      return 'prefix';
    case 'and':
      return names[Math.min(...p.of.map((q) => rank[patternLookAhead(q)]))]!;
    case 'or':
      return names[Math.max(...p.of.map((q) => rank[patternLookAhead(q)]))]!;
    default:
      return 'any';
  }
}

/** The fixed prefixes of the `prefix-lm` parts of a pattern (undefined: read from the input). */
export function patternPrefixes(p: Pattern): (number | undefined)[] {
  return parts(p).flatMap((q) => (q.type === 'prefix-lm' ? [q.prefix] : []));
}
