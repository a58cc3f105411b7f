import { isDynnError } from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { assignNearest, type RoutingShape } from './kmeans-online.js';
import { planRouting, type RoutingAttrs, type RoutingPlan, routingAttention } from './routing-attention.js';
import { RoutingCache, type RoutingStep, routingDecodeAttention } from './routing-cache.js';
import { attendedFromPlan, unitVectors } from './routing-test-utils.js';

const shape: RoutingShape = { batch: 2, heads: 2, time: 20, dim: 4, valueDim: 3 };
const rows = shape.batch * shape.heads;

function routing(window: number, clusters = 3): RoutingAttrs {
  return { heads: 2, clusters, window, causal: true, decay: 0.999, commitment: 0 };
}

function problem(clusters: number, seed: number) {
  return {
    vectors: unitVectors(rows * shape.time, shape.dim, seed),
    centroids: unitVectors(shape.heads * clusters, shape.dim, seed + 50),
  };
}

/** The positions each token attends to under the full causal plan, `[row][t]`. */
function fullSets(plan: RoutingPlan): number[][][] {
  const sets: number[][][] = Array.from({ length: rows }, () => []);
  for (const { token, keys } of attendedFromPlan(plan)) {
    sets[Math.floor(token / shape.time)]![token % shape.time] = keys.map((k) => k % shape.time);
  }
  return sets;
}

/** The vectors of positions [from, to) of every row, `[batch, heads, to - from, dim]`. */
function positions(vectors: Float32Array, from: number, to: number): Float32Array {
  const out = new Float32Array(rows * (to - from) * shape.dim);
  for (let row = 0; row < rows; row++) {
    const at = (row * shape.time + from) * shape.dim;
    out.set(vectors.subarray(at, at + (to - from) * shape.dim), row * (to - from) * shape.dim);
  }
  return out;
}

/** Assignments of positions [from, to), computed from their vectors alone. */
function assignChunk(vectors: Float32Array, centroids: Float32Array, from: number, to: number): Int32Array {
  return assignNearest(positions(vectors, from, to), centroids, { ...shape, time: to - from });
}

/** The attended positions of a step, `[row][token]`. */
function stepSets(step: RoutingStep): number[][][] {
  return Array.from({ length: step.rows }, (_, row) =>
    Array.from({ length: step.tokens }, (_, i) => {
      const at = (row * step.tokens + i) * step.keys;
      return Array.from(step.positions.subarray(at, at + step.counts[row * step.tokens + i]!));
    }),
  );
}

/** Decodes in chunks (`sizes`, summing to the time), saving and reloading the cache between them. */
function decode(
  vectors: Float32Array,
  centroids: Float32Array,
  a: RoutingAttrs,
  sizes: number[],
): RoutingStep[] {
  let cache = new RoutingCache({ rows, clusters: a.clusters, window: a.window });
  const steps: RoutingStep[] = [];
  let from = 0;
  for (const size of sizes) {
    steps.push(cache.appendTokens(assignChunk(vectors, centroids, from, from + size)));
    cache = RoutingCache.fromArray(Array.from(cache.toArray()));
    from += size;
  }
  expect(cache.length).toBe(shape.time);
  return steps;
}

describe('RoutingCache', () => {
  for (const [window, clusters] of [
    [1, 3],
    [2, 3],
    [3, 2],
    [8, 3],
    [32, 2],
  ] as const) {
    it(`gives the full causal plan's attended sets, token by token and in chunks (window ${window})`, () => {
      const a = routing(window, clusters);
      const { vectors, centroids } = problem(clusters, window);
      const expected = fullSets(planRouting(vectors, centroids, shape, a));
      for (const sizes of [Array(shape.time).fill(1), [7, 1, 1, 5, 6], [shape.time]]) {
        const got: number[][][] = Array.from({ length: rows }, () => []);
        for (const step of decode(vectors, centroids, a, sizes)) {
          stepSets(step).forEach((tokens, row) => {
            got[row]!.push(...tokens);
          });
          expect(Math.max(...step.counts)).toBeLessThanOrEqual(2 * window);
        }
        expect(got).toEqual(expected);
      }
    });
  }

  it('reports where a step starts and ends and round-trips through its numbers', () => {
    const cache = new RoutingCache({ rows: 2, clusters: 2, window: 2 });
    const step = cache.appendTokens([0, 0, 0, 1, 0, 1]);
    expect([step.start, step.length, step.tokens, step.keys]).toEqual([0, 3, 3, 4]);
    // Row 0: cluster 0 gets 0, 1 (a full window) then 2, which sees the previous window and itself.
    expect(stepSets(step)[0]).toEqual([[0], [0, 1], [0, 1, 2]]);
    // Row 1: cluster 1 gets 0 and 2, cluster 0 gets 1.
    expect(stepSets(step)[1]).toEqual([[0], [1], [0, 2]]);
    const copy = RoutingCache.fromArray(cache.toArray());
    expect(Array.from(copy.toArray())).toEqual(Array.from(cache.toArray()));
    expect(stepSets(copy.appendTokens([0, 1]))).toEqual(stepSets(cache.appendTokens([0, 1])));
  });

  it('refuses assignments and saved numbers that do not fit', () => {
    const cache = new RoutingCache({ rows: 2, clusters: 2, window: 2 });
    const saved = cache.toArray();
    const cases: [() => unknown, RegExp][] = [
      [() => new RoutingCache({ rows: 0, clusters: 2, window: 2 }), /rows must be an integer >= 1/],
      [() => cache.appendTokens([0, 1, 0]), /2 rows of clusters, got 3 values/],
      [() => cache.appendTokens([0, 2]), /row 1, token 0 is assigned to cluster 2/],
      [() => RoutingCache.fromArray([2, 2]), /starts with 4 numbers/],
      [() => RoutingCache.fromArray(saved.subarray(0, saved.length - 1)), /holds 24 numbers, got 23/],
      [() => RoutingCache.fromArray(saved.map((v, i) => (i === 3 ? 5 : v))), /row 0 holds 0 tokens/],
    ];
    for (const [run, pattern] of cases) {
      let caught: unknown;
      try {
        run();
      } catch (error) {
        caught = error;
      }
      expect(isDynnError(caught)).toBe(true);
      expect((caught as Error).message).toMatch(pattern);
    }
  });
});

describeEachBackend('routingDecodeAttention', () => {
  for (const window of [2, 5]) {
    it(`decodes the outputs of full causal routing attention (window ${window})`, async () => {
      const a = routing(window);
      const { vectors, centroids } = problem(3, 10 + window);
      const plan = planRouting(vectors, centroids, shape, a);
      await expectNoLeaks(async () => {
        const qk = tf.tensor3d(vectors, [rows, shape.time, shape.dim]);
        const v = tf.randomNormal([rows, shape.time, 3], 0, 1, 'float32', 9);
        const full = routingAttention(qk, v, plan, 2);
        const sizes = [6, 1, 1, 1, 4, 1, 6];
        const pieces = tf.tidy(() => {
          const outs: tf.Tensor[] = [];
          for (const step of decode(vectors, centroids, a, sizes)) {
            const queries = tf.slice(qk, [0, step.start, 0], [rows, step.tokens, shape.dim]);
            const keys = tf.slice(qk, [0, 0, 0], [rows, step.length, shape.dim]);
            const values = tf.slice(v, [0, 0, 0], [rows, step.length, 3]);
            outs.push(routingDecodeAttention(queries, keys, values, step, 2));
          }
          return tf.concat(outs, 1);
        });
        await expectClose(pieces, full, { label: `window ${window}` });
        tf.dispose([qk, v, full, pieces]);
      });
    });
  }

  it('rejects tensors that do not fit the step', () => {
    const step = new RoutingCache({ rows: 2, clusters: 2, window: 2 }).appendTokens([0, 1]);
    const q = tf.zeros([2, 1, 4]);
    const k = tf.zeros([2, 2, 4]);
    expect(() => routingDecodeAttention(q, k, k, step)).toThrow(/keys \[2, 1, dim\]/);
    tf.dispose([q, k]);
  });
});
