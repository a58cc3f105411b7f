/**
 * @dynn/sparse-attention: attention that computes only where it matters. Patterns saved as JSON
 * (causal, windows, dilated, global tokens, random and DeepSpeed block layouts, documents,
 * prefix-LM, and/or, padding), planned on the host and computed block by block; score modifiers;
 * grouped-query attention; routing heads with online k-means; KV-cache decoding in sessions.
 *
 * @packageDocumentation
 */

export type { BlockAttentionOptions } from './block-attention.js';
export { blockAttention, gatheredBytes, keptTileFlops } from './block-attention.js';
export type { BlockPlan, PlanRequest } from './block-plan.js';
export { planBlocks } from './block-plan.js';
export { SPARSE_ATTENTION_PLUGIN } from './identity.js';
export type { OnlineKMeansStep, RoutingShape } from './kmeans-online.js';
export { assignNearest, initCentroids, kmeansOnline } from './kmeans-online.js';
export type { Pattern, PatternNeeds, PatternScope, PatternType, TileClass } from './pattern.js';
export {
  PATTERN_TYPES,
  pairKept,
  patternLookAhead,
  patternLookBack,
  patternNeeds,
  patternPrefixes,
  patternProblem,
  patternScope,
  patternUpperBound,
  randomKeyBlocks,
  tileKept,
  validatePattern,
} from './pattern.js';
export { sparseAttention } from './plugin.js';
export type { RoutingAttrs, RoutingPlan } from './routing-attention.js';
export {
  centroidUpdate,
  commitmentLoss,
  MASKED_SCORE,
  planRouting,
  routingAttention,
  unitNormalize,
  validateRoutingAttrs,
} from './routing-attention.js';
export type { RoutingCacheConfig, RoutingStep } from './routing-cache.js';
export { RoutingCache, routingDecodeAttention } from './routing-cache.js';
export type { ScoreMod } from './score-mods.js';
export { alibiSlopes, relativeBucket, scoreModsProblem, validateScoreMods } from './score-mods.js';
export type { SparseAttentionOptions } from './sparse-attention-layer.js';
export { addSparseAttention } from './sparse-attention-layer.js';
export type { ExtraInput, SparseAttentionAttrs, SparseAttentionDecision } from './sparse-attention-op.js';
export { EXTRA_INPUTS, SPARSE_ATTENTION_OP, sparseAttentionOp } from './sparse-attention-op.js';
