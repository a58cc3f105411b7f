import { createRng } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { type RoutingConfig, routeTokens, sinkhorn, softmaxRows } from './routing.js';

const base: RoutingConfig = {
  router: 'top-k',
  k: 1,
  capacityFactor: 0,
  dropPolicy: 'position',
  training: false,
  sinkhornIterations: 8,
};

/** Probabilities `[tokens, experts]` from rows of numbers. */
const probsOf = (rows: number[][]) => Float32Array.from(rows.flat());

describe('routeTokens', () => {
  it('routes each token to its top-k experts, ties to the lowest index, without a limit', () => {
    const probs = probsOf([
      [0.1, 0.6, 0.3],
      [0.4, 0.2, 0.4],
      [0.2, 0.3, 0.5],
    ]);
    const routing = routeTokens(probs, 3, { ...base, k: 2 });
    expect(routing.expertTokens.map((r) => Array.from(r))).toEqual([[1], [0, 2], [0, 1, 2]]);
    expect(Array.from(routing.load)).toEqual([1, 2, 3]);
    expect(routing.droppedPairs).toBe(0);
    expect(routing.capacity).toBeNull();
    // Token 1 ties experts 0 and 2 at 0.4: both chosen; with k = 1 the lower index wins.
    const top1 = routeTokens(probs, 3, base);
    expect(Array.from(top1.expertTokens[0]!)).toEqual([1]);
  });

  it("fills a full expert with first choices before second ones ('position')", () => {
    // Every token's first choice is expert 0, second choice expert 1; capacity ceil(4 * 2 * 0.5 / 2) = 2.
    const probs = probsOf([
      [0.7, 0.3],
      [0.6, 0.4],
      [0.8, 0.2],
      [0.9, 0.1],
    ]);
    const routing = routeTokens(probs, 2, { ...base, k: 2, capacityFactor: 0.5 });
    expect(routing.capacity).toBe(2);
    expect(Array.from(routing.expertTokens[0]!)).toEqual([0, 1]);
    expect(Array.from(routing.expertTokens[1]!)).toEqual([0, 1]);
    expect(routing.droppedPairs).toBe(4);
    expect(routing.unroutedTokens).toBe(2);
    expect(Array.from(routing.demand)).toEqual([4, 4]);
  });

  it("keeps the most probable pairs under the 'probs' policy", () => {
    const probs = probsOf([
      [0.6, 0.4],
      [0.9, 0.1],
      [0.7, 0.3],
      [0.8, 0.2],
    ]);
    const routing = routeTokens(probs, 2, { ...base, capacityFactor: 1, dropPolicy: 'probs' });
    // Capacity ceil(4 / 2) = 2 on expert 0: the two highest probabilities (tokens 1 and 3) stay.
    expect(Array.from(routing.expertTokens[0]!)).toEqual([1, 3]);
    expect(routing.droppedPairs).toBe(2);
  });

  it('lets each expert pick its tokens under expert choice: equal loads, ties to the lower token', () => {
    const probs = probsOf([
      [0.9, 0.1],
      [0.8, 0.2],
      [0.5, 0.5],
      [0.5, 0.5],
    ]);
    const routing = routeTokens(probs, 2, { ...base, router: 'expert-choice', k: 1 });
    expect(Array.from(routing.load)).toEqual([2, 2]);
    expect(Array.from(routing.expertTokens[0]!)).toEqual([0, 1]);
    expect(Array.from(routing.expertTokens[1]!)).toEqual([2, 3]);
  });

  it('shifts choices with the balancing bias but not the probabilities', () => {
    const probs = probsOf([
      [0.6, 0.4],
      [0.55, 0.45],
    ]);
    const routing = routeTokens(probs, 2, base, { bias: Float32Array.of(-0.25, 0) });
    expect(Array.from(routing.expertTokens[0]!)).toEqual([]);
    expect(Array.from(routing.expertTokens[1]!)).toEqual([0, 1]);
  });

  it("keeps GShard's second expert with probability twice its normalised gate in training", () => {
    const tokens = 4000;
    const probs = new Float32Array(tokens * 3);
    for (let t = 0; t < tokens; t++) probs.set([0.6, 0.15, 0.25], t * 3);
    const routing = routeTokens(
      probs,
      3,
      { ...base, router: 'gshard', k: 2, training: true },
      { rng: createRng(1) },
    );
    // Second gate 0.25 / 0.85: kept with probability 2 * 0.294 = 0.588.
    expect(routing.load[2]! / tokens).toBeCloseTo((2 * 0.25) / 0.85, 1);
    expect(routing.load[0]).toBe(tokens);
    const inference = routeTokens(probs, 3, { ...base, router: 'gshard', k: 2 });
    expect(inference.load[2]).toBe(tokens);
  });

  it('balances with Sinkhorn in training: skewed logits spread over the experts', () => {
    const tokens = 64;
    const logits = new Float32Array(tokens * 4);
    for (let t = 0; t < tokens; t++) logits.set([2 + 0.01 * t, 1, 0.5, 0.01 * (t % 7)], t * 4);
    const probs = softmaxRows(logits, 4);
    const plain = routeTokens(probs, 4, { ...base, router: 'sinkhorn' });
    expect(plain.load[0]).toBe(tokens);
    const balanced = routeTokens(probs, 4, { ...base, router: 'sinkhorn', training: true }, { logits });
    expect(Math.max(...balanced.load)).toBeLessThanOrEqual(tokens / 2);
    const m = sinkhorn(logits, 4, 50);
    const columnSums = [0, 1, 2, 3].map((j) =>
      Array.from({ length: tokens }, (_, i) => m[i * 4 + j]!).reduce((a, b) => a + b),
    );
    for (const sum of columnSums) expect(sum).toBeCloseTo(tokens / 4, 1);
  });
});
