import { applyCapacity, capacityFor, groupByIds, type Rng } from '@dynn/core';

/**
 * How tokens are assigned to experts.
 *
 * - `'top-k'`: each token picks its `k` experts of highest probability (token choice).
 * - `'switch'`: Switch Transformer, top-1 (`k` must be 1).
 * - `'gshard'`: GShard top-2 (`k` must be 2); in training the second expert is kept with a
 *   probability of twice its normalised gate (GShard's random routing).
 * - `'expert-choice'`: each expert picks its `ceil(tokens * k * capacityFactor / experts)` tokens of
 *   highest probability (Zhou et al. 2022): perfectly balanced, a token may get 0 or many experts.
 *   A token's experts depend on the other tokens of the batch (not for causal decoding).
 * - `'sinkhorn'`: balanced assignment (BASE layers' goal, by Sinkhorn iterations as in Megatron
 *   core): in training each token picks its top `k` of the Sinkhorn-balanced scores; in
 *   inference, plain top-k.
 */
export type RouterKind = 'top-k' | 'switch' | 'gshard' | 'expert-choice' | 'sinkhorn';

/** The router kinds, in the order the op's attribute lists them. */
export const ROUTER_KINDS: readonly RouterKind[] = ['top-k', 'switch', 'gshard', 'expert-choice', 'sinkhorn'];

/**
 * Which tokens a full expert drops (capacity): `'position'` keeps first choices before second
 * ones, then earlier tokens (GShard); `'probs'` keeps the token-expert pairs of highest router
 * probability (Megatron core's `probs` drop policy).
 */
export type DropPolicy = 'position' | 'probs';

/** What {@link routeTokens} needs besides the probabilities. */
export interface RoutingConfig {
  /** The router. */
  router: RouterKind;
  /** Experts per token (token choice) or the average per token (expert choice). */
  k: number;
  /** Tokens each expert may take, as a factor of an even share; 0: no limit (dropless). */
  capacityFactor: number;
  /** Which pairs a full expert drops. */
  dropPolicy: DropPolicy;
  /** Training routing (GShard's random second expert, Sinkhorn balancing) or inference routing. */
  training: boolean;
  /** Sinkhorn iterations (router `'sinkhorn'`, training). */
  sinkhornIterations: number;
}

/** Where the tokens of one call go: plain data, made on the host. */
export interface Routing {
  /** Tokens routed. */
  tokens: number;
  /** Experts. */
  experts: number;
  /** The tokens each expert computes, ascending. */
  expertTokens: Int32Array[];
  /** 1 where token `t` chose expert `e` before capacity was applied, at `t * experts + e`. */
  chosen: Uint8Array;
  /** Tokens that chose each expert, before capacity (the `f` of the load-balancing loss). */
  demand: Int32Array;
  /** Tokens each expert computes: `expertTokens[e].length`. */
  load: Int32Array;
  /** Token-expert pairs chosen but dropped by capacity. */
  droppedPairs: number;
  /** Tokens no expert computes (their output is 0 plus the shared experts'). */
  unroutedTokens: number;
  /** The tokens an expert may take, or null without a limit. */
  capacity: number | null;
}

/** Row-wise softmax of `[rows, cols]` logits, on the host (float64 sums). */
export function softmaxRows(logits: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(logits.length);
  for (let offset = 0; offset < logits.length; offset += cols) {
    let max = -Infinity;
    for (let j = 0; j < cols; j++) max = Math.max(max, logits[offset + j]!);
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += Math.exp(logits[offset + j]! - max);
    for (let j = 0; j < cols; j++) out[offset + j] = Math.exp(logits[offset + j]! - max) / sum;
  }
  return out;
}

/**
 * Sinkhorn balancing of `[rows, cols]` logits: `exp(logits)` scaled alternately so that every
 * column, then every row, has an equal total. Its top entries per row spread rows evenly over
 * columns (a relaxed balanced assignment).
 */
export function sinkhorn(logits: Float32Array, cols: number, iterations: number): Float64Array {
  const rows = logits.length / cols;
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const m = Float64Array.from(logits, (v) => Math.exp(v - max));
  for (let it = 0; it < iterations; it++) {
    for (let j = 0; j < cols; j++) {
      let sum = 0;
      for (let i = 0; i < rows; i++) sum += m[i * cols + j]!;
      const scale = sum > 0 ? rows / cols / sum : 0;
      for (let i = 0; i < rows; i++) m[i * cols + j]! *= scale;
    }
    for (let i = 0; i < rows; i++) {
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += m[i * cols + j]!;
      const scale = sum > 0 ? 1 / sum : 0;
      for (let j = 0; j < cols; j++) m[i * cols + j]! *= scale;
    }
  }
  return m;
}

/**
 * The `k` largest of `count` scores starting at `offset`, largest first; equal scores go to the
 * lower index and NaN ranks below every number.
 */
export function topK(scores: ArrayLike<number>, offset: number, count: number, k: number): number[] {
  const picked: number[] = [];
  for (let j = 0; j < count; j++) {
    const v = scores[offset + j]!;
    // Insertion into a sorted list of at most k: k is small (experts per token).
    let at = picked.length;
    while (at > 0) {
      const w = scores[offset + picked[at - 1]!]!;
      const beats = Number.isNaN(w) ? !Number.isNaN(v) : v > w;
      if (!beats) break;
      at--;
    }
    if (at < k) {
      picked.splice(at, 0, j);
      if (picked.length > k) picked.pop();
    }
  }
  return picked;
}

/**
 * Assigns tokens to experts from the router's probabilities (`[tokens, experts]`, row-major) and,
 * for token-choice routers, a per-expert bias added to the probabilities for the choice only
 * (auxiliary-loss-free balancing); `rng` draws GShard's random second expert in training. Ties
 * go to the lower expert index (token choice) or the lower token index (expert choice).
 */
export function routeTokens(
  probs: Float32Array,
  experts: number,
  config: RoutingConfig,
  options: { bias?: Float32Array; logits?: Float32Array; rng?: Rng } = {},
): Routing {
  const tokens = probs.length / experts;
  const { k, router } = config;
  const chosen = new Uint8Array(tokens * experts);
  const demand = new Int32Array(experts);
  if (router === 'expert-choice') {
    const capacity = Math.min(tokens, capacityFor(tokens * k, experts, config.capacityFactor || 1));
    const expertTokens: Int32Array[] = [];
    const column = new Float32Array(tokens);
    for (let e = 0; e < experts; e++) {
      for (let t = 0; t < tokens; t++) column[t] = probs[t * experts + e]!;
      const picked = Int32Array.from(topK(column, 0, tokens, capacity)).sort();
      for (const t of picked) chosen[t * experts + e] = 1;
      demand[e] = picked.length;
      expertTokens.push(picked);
    }
    return finish(tokens, experts, expertTokens, chosen, demand, 0, capacity);
  }
  // Token choice: the scores a token ranks experts by.
  let scores: ArrayLike<number> = probs;
  if (router === 'sinkhorn' && config.training) {
    if (options.logits === undefined) throw new Error("routeTokens: the 'sinkhorn' router needs the logits");
    scores = sinkhorn(options.logits, experts, config.sinkhornIterations);
  } else if (options.bias !== undefined) {
    const bias = options.bias;
    scores = probs.map((p, i) => p + bias[i % experts]!);
  }
  // Pairs as slots `choice * tokens + token`: first choices come before second ones, so the
  // 'position' policy fills experts with first choices first.
  const slotExpert = new Int32Array(k * tokens).fill(-1);
  for (let t = 0; t < tokens; t++) {
    const picked = topK(scores, t * experts, experts, k);
    if (router === 'gshard' && config.training && picked.length === 2) {
      const [first, second] = [probs[t * experts + picked[0]!]!, probs[t * experts + picked[1]!]!];
      const share = first + second > 0 ? second / (first + second) : 0;
      if (options.rng === undefined)
        throw new Error("routeTokens: the 'gshard' router needs an rng in training");
      if (options.rng.next() >= 2 * share) picked.pop();
    }
    picked.forEach((e, choice) => {
      slotExpert[choice * tokens + t] = e;
      chosen[t * experts + e] = 1;
      demand[e]!++;
    });
  }
  const slots = Int32Array.from(slotExpert.keys()).filter((s) => slotExpert[s]! >= 0);
  const grouping = groupByIds(
    Array.from(slots, (s) => slotExpert[s]!),
    experts,
  );
  const capacity = config.capacityFactor > 0 ? capacityFor(tokens * k, experts, config.capacityFactor) : null;
  let kept = grouping;
  let droppedPairs = 0;
  if (capacity !== null) {
    const slotScores =
      config.dropPolicy === 'probs'
        ? Array.from(slots, (s) => probs[(s % tokens) * experts + slotExpert[s]!]!)
        : undefined;
    const capped = applyCapacity(
      grouping,
      capacity,
      config.dropPolicy === 'probs' ? 'score' : 'position',
      slotScores,
    );
    kept = capped.kept;
    droppedPairs = capped.dropped.length;
  }
  const expertTokens: Int32Array[] = [];
  for (let e = 0; e < experts; e++) {
    const rows = kept.order.subarray(kept.offsets[e]!, kept.offsets[e + 1]!);
    expertTokens.push(Int32Array.from(rows, (row) => slots[row]! % tokens).sort());
  }
  return finish(tokens, experts, expertTokens, chosen, demand, droppedPairs, capacity);
}

function finish(
  tokens: number,
  experts: number,
  expertTokens: Int32Array[],
  chosen: Uint8Array,
  demand: Int32Array,
  droppedPairs: number,
  capacity: number | null,
): Routing {
  const served = new Uint8Array(tokens);
  for (const rows of expertTokens) for (const t of rows) served[t] = 1;
  let unroutedTokens = 0;
  for (const s of served) if (s === 0) unroutedTokens++;
  const load = Int32Array.from(expertTokens, (rows) => rows.length);
  return { tokens, experts, expertTokens, chosen, demand, load, droppedPairs, unroutedTokens, capacity };
}
