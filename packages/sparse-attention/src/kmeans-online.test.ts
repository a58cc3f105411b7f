import { createRng, isDynnError } from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  assignNearest,
  initCentroids,
  kmeansOnline,
  type RoutingShape,
  unitNormalizeHost,
} from './kmeans-online.js';
import { centroidUpdate, planRouting } from './routing-attention.js';
import { unitVectors } from './routing-test-utils.js';

const DIM = 8;
const PLANTED = 4;
const batchShape: RoutingShape = { batch: 2, heads: 1, time: 32, dim: DIM };

/** Unit vectors around the planted centres e0..e3 (noise 0.25 per coordinate), with their labels. */
function plantedBatch(tokens: number, seed: number): { vectors: Float32Array; labels: Int32Array } {
  const rng = createRng(seed);
  const raw = new Float32Array(tokens * DIM);
  const labels = new Int32Array(tokens);
  for (let token = 0; token < tokens; token++) {
    labels[token] = rng.int(PLANTED);
    for (let j = 0; j < DIM; j++) raw[token * DIM + j] = (j === labels[token] ? 1 : 0) + 0.25 * rng.normal();
  }
  return { vectors: unitNormalizeHost(raw, DIM), labels };
}

/** Share of points whose cluster's majority label is their own. */
function purity(assignment: Int32Array, labels: Int32Array, clusters: number): number {
  const counts = new Int32Array(clusters * PLANTED);
  assignment.forEach((c, i) => {
    counts[c * PLANTED + labels[i]!]!++;
  });
  let majority = 0;
  for (let c = 0; c < clusters; c++) majority += Math.max(...counts.subarray(c * PLANTED, (c + 1) * PLANTED));
  return majority / assignment.length;
}

/** Purity of centroids on 256 fresh points. */
function heldOutPurity(centroids: Float32Array, clusters: number): number {
  const { vectors, labels } = plantedBatch(256, 12345);
  const assignment = assignNearest(vectors, centroids, { batch: 1, heads: 1, time: 256, dim: DIM });
  return purity(assignment, labels, clusters);
}

/** Host online k-means over `steps` planted batches. */
function trainHost(start: Float32Array, steps: number, decay: number): Float32Array {
  let centroids = start;
  for (let step = 0; step < steps; step++) {
    centroids = kmeansOnline(centroids, plantedBatch(64, step + 1).vectors, batchShape, decay).centroids;
  }
  return centroids;
}

function norms(values: Float32Array, dim: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i += dim) out.push(Math.hypot(...values.subarray(i, i + dim)));
  return out;
}

describe('online k-means on the host', () => {
  it('recovers planted clusters from data-drawn centroids', () => {
    const start = initCentroids(plantedBatch(64, 1).vectors, batchShape, PLANTED, 3);
    const centroids = trainHost(start, 15, 0.7);
    expect(heldOutPurity(centroids, PLANTED)).toBeGreaterThanOrEqual(0.95);
    for (const n of norms(centroids, DIM)) expect(n).toBeCloseTo(1, 5);
  });

  it('recovers planted clusters from random centroids, given spare clusters', () => {
    const start = unitVectors(8, DIM, 5);
    expect(heldOutPurity(start, 8)).toBeLessThan(0.95);
    expect(heldOutPurity(trainHost(start, 30, 0.7), 8)).toBeGreaterThanOrEqual(0.95);
  });

  it('moves each centroid by the EMA of its tokens mean and leaves empty clusters alone', () => {
    const shape: RoutingShape = { batch: 1, heads: 1, time: 3, dim: 2 };
    const vectors = Float32Array.from([1, 0, 0.6, 0.8, 0, 1]);
    const centroids = Float32Array.from([1, 0, -1, 0]);
    const step = kmeansOnline(centroids, vectors, shape, 0.5);
    expect(Array.from(step.assignment)).toEqual([0, 0, 0]);
    expect(Array.from(step.counts)).toEqual([3, 0]);
    // 0.5 * (1, 0) + 0.5 * mean((1, 0), (0.6, 0.8), (0, 1)) = (0.7667, 0.3), normalised.
    const x = 0.5 + 0.5 * (1.6 / 3);
    const y = 0.5 * (1.8 / 3);
    expect(step.centroids[0]).toBeCloseTo(x / Math.hypot(x, y), 6);
    expect(step.centroids[1]).toBeCloseTo(y / Math.hypot(x, y), 6);
    expect(Array.from(step.centroids.subarray(2))).toEqual([-1, 0]);
    const jump = kmeansOnline(centroids, vectors, shape, 0, Int32Array.from([1, 1, 0]));
    expect(Array.from(jump.centroids.subarray(0, 2))).toEqual([0, 1]);
    expect(jump.centroids[2]).toBeCloseTo(0.8 / Math.hypot(0.8, 0.4), 6);
  });

  it('assigns ties to the lowest cluster and keeps heads apart', () => {
    const shape: RoutingShape = { batch: 2, heads: 2, time: 1, dim: 2 };
    const vectors = Float32Array.from([1, 0, 0, 1, 0, 1, 1, 0]);
    // Head 0: (1, 0) and (0, 1); head 1: (0, 1) twice, a tie, and (1, 0) nowhere.
    const centroids = Float32Array.from([1, 0, 0, 1, 0, 1, 0, 1]);
    expect(Array.from(assignNearest(vectors, centroids, shape))).toEqual([0, 0, 1, 0]);
  });

  it('draws distinct unit centroids from data, deterministically, and fills up when data runs out', () => {
    const shape: RoutingShape = { batch: 2, heads: 2, time: 4, dim: 3 };
    const vectors = unitVectors(16, 3, 8);
    const a = initCentroids(vectors, shape, 3, 7);
    expect(Array.from(initCentroids(vectors, shape, 3, 7))).toEqual(Array.from(a));
    for (const n of norms(a, 3)) expect(n).toBeCloseTo(1, 5);
    // Each centroid is one of its head's tokens.
    for (let head = 0; head < 2; head++) {
      for (let c = 0; c < 3; c++) {
        const centroid = a.subarray((head * 3 + c) * 3, (head * 3 + c + 1) * 3);
        const found = [0, 1].some((b) =>
          [0, 1, 2, 3].some((t) => {
            const at = ((b * 2 + head) * 4 + t) * 3;
            return centroid.every((value, j) => Math.abs(value - vectors[at + j]!) < 1e-6);
          }),
        );
        expect(found).toBe(true);
      }
    }
    const single: RoutingShape = { batch: 1, heads: 1, time: 2, dim: 3 };
    const few = initCentroids(Float32Array.from([1, 0, 0, 1, 0, 0]), single, 4, 1);
    for (const n of norms(few, 3)) expect(n).toBeCloseTo(1, 5);
    expect(new Set(Array.from({ length: 4 }, (_, c) => few.subarray(c * 3, c * 3 + 3).join())).size).toBe(4);
  });

  it('refuses bad input with a DynnError that says what is wrong', () => {
    const shape: RoutingShape = { batch: 1, heads: 1, time: 2, dim: 2 };
    const ok = Float32Array.from([1, 0, 0, 1]);
    const cases: [() => unknown, RegExp][] = [
      [() => kmeansOnline(ok, ok, shape, 1.5), /decay must be in \[0, 1\]/],
      [() => kmeansOnline(ok, ok, shape, 0.5, Int32Array.from([0, 2])), /token 1 is assigned to cluster 2/],
      [() => assignNearest(ok.subarray(1), ok, shape), /vectors must be a Float32Array/],
      [() => assignNearest(ok, ok.subarray(1), shape), /centroids must be a Float32Array/],
      [() => assignNearest(ok, ok, { ...shape, time: 0 }), /time must be an integer >= 1/],
      [() => initCentroids(ok, shape, 0), /clusters must be an integer >= 1/],
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

describeEachBackend('online k-means with the tensor update', () => {
  it('agrees with the host path step by step and recovers the planted clusters', async () => {
    const attrs = { heads: 1, clusters: PLANTED, window: 8, causal: true, decay: 0.7, commitment: 0 };
    const start = initCentroids(plantedBatch(64, 1).vectors, batchShape, PLANTED, 3);
    let centroids: tf.Tensor = tf.tensor3d(start, [1, PLANTED, DIM]);
    await expectNoLeaks(async () => {
      for (let step = 0; step < 15; step++) {
        const { vectors } = plantedBatch(64, step + 1);
        const current = (await centroids.data()) as Float32Array;
        const plan = planRouting(vectors, current, batchShape, attrs);
        const x = tf.tensor3d(vectors, [2, 32, DIM]);
        const next = centroidUpdate(centroids, x, plan, attrs.decay);
        const host = kmeansOnline(current, vectors, batchShape, attrs.decay, plan.assignment);
        await expectClose(next, host.centroids, { label: `step ${step}` });
        tf.dispose([x, centroids]);
        centroids = next;
      }
    });
    const learned = (await centroids.data()) as Float32Array;
    await expectClose(learned, trainHost(start, 15, 0.7), { label: 'after 15 steps' });
    expect(heldOutPurity(learned, PLANTED)).toBeGreaterThanOrEqual(0.95);
    centroids.dispose();
  });
});
