// Small models the tests of this package share. Not exported from the package.
import { createRuntime, type Graph, GraphBuilder } from '@dynn/core';
import { addMoeLayer, type MoeLayerOptions } from './moe-layer.js';
import { moeRouter } from './plugin.js';

/** A runtime with the moe-router plugin. */
export const runtime = createRuntime({ plugins: [moeRouter()] });

/**
 * One MoE layer on sequences `[batch, 3, d]` (node `moe`, output `y`): by default 4 feed-forward
 * experts of 8 hidden units, d = 4, top-2.
 */
export function moeGraph(options: Partial<MoeLayerOptions> = {}, d = 4): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 3, d]);
  const y = addMoeLayer(b, runtime, x, { experts: 4, expert: { hidden: 8 }, k: 2, name: 'moe', ...options });
  return b.build({ y });
}
