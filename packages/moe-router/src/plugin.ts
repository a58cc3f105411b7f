import { definePlugin, type Plugin } from '@dynn/core';
import { MOE_ROUTER_PLUGIN } from './identity.js';
import { keyValueBottleneckOp } from './key-value-bottleneck.js';
import { moeOp } from './moe-op.js';
import { moefyPass } from './moefy.js';
import { upcyclePass } from './upcycle.js';

/**
 * The moe-router plugin: the op `moe-router.MoE` (a mixture-of-experts layer whose experts are
 * sub-graphs, computing only the tokens routed to each), the op `moe-router.KeyValueBottleneck`
 * (the discrete key-value bottleneck) and the passes (`moe-router.moefy`:
 * MoEfication of a dense feed-forward block; `moe-router.upcycle`: sparse upcycling). Plain data:
 * pass it to `createRuntime({ plugins: [moeRouter()] })`.
 */
export function moeRouter(): Plugin {
  return definePlugin({
    ...MOE_ROUTER_PLUGIN,
    ops: [moeOp, keyValueBottleneckOp],
    passes: [moefyPass, upcyclePass],
  });
}
