/**
 * @dynn/moe-router: mixture-of-experts layers that compute only the experts a token needs.
 */
export { MOE_ROUTER_PLUGIN } from './identity.js';
export type { FfnExpertOptions, MoeLayerOptions } from './moe-layer.js';
export { addMoeLayer, ffnExpertGraph } from './moe-layer.js';
export type { CombineMode, MoeAttrs, MoeDecision, RouterNoise } from './moe-op.js';
export { MOE_OP, moeOp, resolvedCombine } from './moe-op.js';
export type { MoeRunOptions } from './options.js';
export { MOE_ROUTER_OPTIONS, moeOptions, readMoeOptions } from './options.js';
export { moeRouter } from './plugin.js';
export type { DropPolicy, RouterKind, Routing, RoutingConfig } from './routing.js';
export { ROUTER_KINDS, routeTokens, sinkhorn, softmaxRows, topK } from './routing.js';
