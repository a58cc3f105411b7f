// Small models the tests of this package share. Not exported from the package.
import { createModel, createRuntime, type Graph, GraphBuilder, type Model } from '@dynn/core';
import { seededUniform } from '@dynn/testing';
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

/** A residual feed-forward block on sequences `[batch, 3, 8]` (`ffn1` 8 -> 16 relu, `ffn2` 16 -> 8) and a head. */
export function residualBlockGraph(): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 3, 8]);
  const h = b.add('core.Dense', x, { units: 16, activation: 'relu' }, { name: 'ffn1' });
  const f = b.add('core.Dense', h, { units: 8 }, { name: 'ffn2' });
  const r = b.add('core.Add', [x, f], {}, { name: 'residual' });
  return b.build({ y: b.add('core.Dense', r, { units: 4 }, { name: 'head' }) });
}

/** The block with seeded random weights, biases included. */
export function residualBlockModel(): Model {
  const model = createModel(runtime, residualBlockGraph(), { seed: 1 });
  let i = 0;
  for (const v of model.params.values()) {
    const values = seededUniform(v.shape, { seed: 50 + i++, min: -0.6, max: 0.6 });
    v.assign(values);
    values.dispose();
  }
  return model;
}

/** A parameter's values. */
export async function paramValues(model: Model, name: string): Promise<Float32Array> {
  return (await model.params.get(name)!.data()) as Float32Array;
}
