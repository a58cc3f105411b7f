import { definePlugin, type Plugin } from '@dynn/core';
import { MOE_ROUTER_PLUGIN } from './identity.js';
import { moeOp } from './moe-op.js';

/**
 * The moe-router plugin: the op `moe-router.MoE` (a mixture-of-experts layer whose experts are
 * sub-graphs, computing only the tokens routed to each) with its passes. Plain data: pass it to
 * `createRuntime({ plugins: [moeRouter()] })`.
 */
export function moeRouter(): Plugin {
  return definePlugin({ ...MOE_ROUTER_PLUGIN, ops: [moeOp], passes: [] });
}
