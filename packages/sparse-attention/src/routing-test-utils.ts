import { createRng } from '@dynn/core';
import { unitNormalizeHost } from './kmeans-online.js';
import type { RoutingPlan } from './routing-attention.js';

/** `count` seeded normal vectors of `dim` values, scaled to unit length. */
export function unitVectors(count: number, dim: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return unitNormalizeHost(
    Float32Array.from({ length: count * dim }, () => rng.normal()),
    dim,
  );
}

/**
 * For each query slot of a plan with a real token, that token and the tokens it attends to (sorted
 * token numbers), read from the plan's key indices and mask: what the tests compare against sets
 * built from the definitions.
 */
export function attendedFromPlan(plan: RoutingPlan): { token: number; keys: number[] }[] {
  const { windows, queriesPerWindow: wq, keysPerWindow: wk } = plan;
  const out: { token: number; keys: number[] }[] = [];
  for (let window = 0; window < windows; window++) {
    for (let q = 0; q < wq; q++) {
      const token = plan.slotToken[window * wq + q]!;
      if (token < 0) continue;
      const keys: number[] = [];
      for (let s = 0; s < wk; s++) {
        const kept = plan.mask === undefined || plan.mask[(window * wq + q) * wk + s] === 0;
        if (kept) keys.push(plan.keyIndex[window * wk + s]!);
      }
      out.push({ token, keys: keys.sort((a, b) => a - b) });
    }
  }
  return out;
}
