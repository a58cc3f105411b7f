import { DynnError } from '@dynn/core';

/**
 * A change to the attention scores `s = q.k / sqrt(keyDim)` before the mask and the softmax,
 * applied in list order, as JSON (FlexAttention's `score_mod`, saved with the model):
 *
 * - `alibi` (Press et al., ALiBi): adds `-slope_h * |i - j|`, the slopes geometric per head
 *   ({@link alibiSlopes}); no parameter.
 * - `relative-bias` (T5): adds a learned bias per head and bucket of the relative position
 *   `j - i` ({@link relativeBucket}: exact up to `buckets / 2` (a quarter when `bidirectional`),
 *   logarithmic up to `maxDistance`, one bucket beyond). Its parameter `relativeBias`
 *   `[buckets, numHeads]` is laid out as T5's `relative_attention_bias` weight.
 * - `softcap` (Gemma 2): `cap * tanh(s / cap)`, bounding scores to `(-cap, cap)`.
 */
export type ScoreMod =
  | {
      /** ALiBi's linear distance penalty. */
      type: 'alibi';
    }
  | {
      /** T5's learned bias per relative-position bucket. */
      type: 'relative-bias';
      /** Buckets (T5: 32). */
      buckets: number;
      /** Distance from which every key shares the last bucket (T5: 128). */
      maxDistance: number;
      /** Whether keys after the query get buckets of their own (T5's encoder: true). */
      bidirectional: boolean;
    }
  | {
      /** Soft-capping. */
      type: 'softcap';
      /** The bound of the scores. */
      cap: number;
    };

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function modProblem(value: unknown, where: string): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `${where} must be an object such as {"type": "alibi"}, got ${JSON.stringify(value)}`;
  }
  const mod = value as Record<string, unknown>;
  const fields: Record<string, string[]> = {
    alibi: [],
    'relative-bias': ['buckets', 'maxDistance', 'bidirectional'],
    softcap: ['cap'],
  };
  const type = mod.type;
  if (typeof type !== 'string' || !Object.hasOwn(fields, type)) {
    return `${where}.type is ${JSON.stringify(type)}; expected 'alibi', 'relative-bias' or 'softcap'`;
  }
  for (const key of Object.keys(mod)) {
    if (key !== 'type' && !fields[type]!.includes(key)) {
      return `${where}.${key} is not a field of '${type}' (its fields: ${fields[type]!.join(', ') || 'none'})`;
    }
  }
  if (type === 'softcap') {
    const cap = mod.cap;
    if (typeof cap !== 'number' || !Number.isFinite(cap) || cap <= 0) {
      return `${where}.cap must be a number > 0 (scores become cap * tanh(s / cap)), got ${JSON.stringify(cap)}`;
    }
  }
  if (type === 'relative-bias') {
    const { buckets, maxDistance, bidirectional } = mod;
    if (typeof bidirectional !== 'boolean') {
      return `${where}.bidirectional must be true or false (T5's encoder: true, its decoder: false)`;
    }
    const least = bidirectional ? 4 : 2;
    if (!isInt(buckets) || buckets < least) {
      return `${where}.buckets must be an integer >= ${least}${bidirectional ? ' (half of them for each direction)' : ''}, got ${JSON.stringify(buckets)}`;
    }
    const exact = exactBuckets(buckets, bidirectional);
    if (!isInt(maxDistance) || maxDistance <= exact) {
      return `${where}.maxDistance must be an integer above the ${exact} exact buckets (T5: 128), got ${JSON.stringify(maxDistance)}`;
    }
  }
  return undefined;
}

/** What is wrong with a list of score modifiers (naming the entry and field), or undefined. */
export function scoreModsProblem(value: unknown, where = 'scoreMods'): string | undefined {
  if (!Array.isArray(value))
    return `${where} must be an array of score modifiers, got ${JSON.stringify(value)}`;
  for (const [i, mod] of value.entries()) {
    const problem = modProblem(mod, `${where}[${i}]`);
    if (problem) return problem;
  }
  if (value.filter((m) => (m as ScoreMod).type === 'relative-bias').length > 1) {
    return `${where} holds two 'relative-bias' modifiers; a layer has one relative bias table`;
  }
  return undefined;
}

/**
 * Checks a list of score modifiers and returns it typed. Throws an `INVALID_ATTR`
 * {@link DynnError} naming the bad entry and field otherwise.
 */
export function validateScoreMods(value: unknown, where = 'scoreMods'): ScoreMod[] {
  const problem = scoreModsProblem(value, where);
  if (problem) throw new DynnError('INVALID_ATTR', `${problem}.`);
  return value as ScoreMod[];
}

/**
 * ALiBi's head slopes: for `heads` a power of two, the geometric sequence starting at and
 * multiplied by `2^(-8 / heads)`; otherwise those of the nearest lower power of two, then every
 * other slope of the next power of two (the paper's code).
 */
export function alibiSlopes(heads: number): number[] {
  const powerOfTwo = (n: number) => {
    const start = 2 ** -(2 ** -(Math.log2(n) - 3));
    return Array.from({ length: n }, (_, i) => start * start ** i);
  };
  if (Number.isInteger(Math.log2(heads))) return powerOfTwo(heads);
  const closest = 2 ** Math.floor(Math.log2(heads));
  return [...powerOfTwo(closest), ...alibiSlopes(2 * closest).filter((_, i) => i % 2 === 0)].slice(0, heads);
}

/** Buckets that hold one distance each. */
function exactBuckets(buckets: number, bidirectional: boolean): number {
  return Math.floor((bidirectional ? Math.floor(buckets / 2) : buckets) / 2);
}

/**
 * T5's bucket of a relative position `j - i` (key minus query): `bidirectional` gives keys after
 * the query the upper half of the buckets; distances below the exact buckets have one bucket each,
 * larger ones share logarithmically wider buckets up to `maxDistance`, and farther ones the last.
 * Unidirectional: every key after the query shares bucket 0.
 */
export function relativeBucket(
  relative: number,
  buckets: number,
  maxDistance: number,
  bidirectional: boolean,
): number {
  let bucket = 0;
  let n = -relative;
  let count = buckets;
  if (bidirectional) {
    count = Math.floor(buckets / 2);
    if (n < 0) bucket += count;
    n = Math.abs(n);
  } else {
    n = Math.max(n, 0);
  }
  const exact = Math.floor(count / 2);
  if (n < exact) return bucket + n;
  const large = exact + Math.trunc((Math.log(n / exact) / Math.log(maxDistance / exact)) * (count - exact));
  return bucket + Math.min(large, count - 1);
}
