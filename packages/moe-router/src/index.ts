/**
 * @dynn/moe-router: mixture-of-experts layers that compute only the experts a token needs.
 */

export type {
  ArmResult,
  AutoencoderOptions,
  BottleneckArmOptions,
  ClassIncrementalOptions,
  ClassIncrementalProgress,
  ClassIncrementalResult,
  ProbeArmOptions,
} from './class-incremental.js';
export { runClassIncremental } from './class-incremental.js';
export type { FeedForward, MoeRouterOptions } from './feed-forward.js';
export { findFeedForwards } from './feed-forward.js';
export { MOE_ROUTER_PLUGIN } from './identity.js';
export type { KeyInitOptions, KeyInitResult, KeyValueBottleneckAttrs } from './key-value-bottleneck.js';
export {
  initKeyValueKeys,
  KEY_VALUE_BOTTLENECK_OP,
  keyValueBottleneckOp,
  selectKeys,
} from './key-value-bottleneck.js';
export type { KMeansOptions, KMeansResult } from './kmeans.js';
export { balancedKMeans, kmeans } from './kmeans.js';
export type { FfnExpertOptions, MoeLayerOptions } from './moe-layer.js';
export { addMoeLayer, ffnExpertGraph } from './moe-layer.js';
export type { CombineMode, MoeAttrs, MoeDecision, RouterNoise } from './moe-op.js';
export { MOE_OP, moeOp, resolvedCombine } from './moe-op.js';
export type { MoefyMethod, MoefyOptions } from './moefy.js';
export { MOEFY_PASS, moefy, moefyModel, moefyPass } from './moefy.js';
export type { MoeRunOptions } from './options.js';
export { MOE_ROUTER_OPTIONS, moeOptions, readMoeOptions } from './options.js';
export { moeRouter } from './plugin.js';
export type { DropPolicy, RouterKind, Routing, RoutingConfig } from './routing.js';
export { ROUTER_KINDS, routeTokens, sinkhorn, softmaxRows, topK } from './routing.js';
export type { UpcycleOptions } from './upcycle.js';
export { UPCYCLE_PASS, upcycle, upcycleModel, upcyclePass } from './upcycle.js';
