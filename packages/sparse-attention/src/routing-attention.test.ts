import { isDynnError } from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks, toleranceFor } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { assignNearest, kmeansOnline, type RoutingShape } from './kmeans-online.js';
import {
  centroidUpdate,
  commitmentLoss,
  planRouting,
  type RoutingAttrs,
  type RoutingPlan,
  routingAttention,
  unitNormalize,
  validateRoutingAttrs,
} from './routing-attention.js';
import { attendedFromPlan, unitVectors } from './routing-test-utils.js';

const attrs = (over: Partial<RoutingAttrs>): RoutingAttrs => ({
  heads: 2,
  clusters: 3,
  window: 3,
  causal: false,
  decay: 0.999,
  commitment: 1,
  ...over,
});

/** Random unit vectors and centroids for a shape. */
function problem(shape: RoutingShape, clusters: number, seed: number) {
  const { batch, heads, time, dim } = shape;
  return {
    vectors: unitVectors(batch * heads * time, dim, seed),
    centroids: unitVectors(heads * clusters, dim, seed + 100),
  };
}

/**
 * The attended sets by the definitions, per token (sorted token numbers, one list per membership),
 * built without the plan's code: nearest-centroid windows (causal) or each cluster's top-w.
 */
function definitionSets(
  vectors: Float32Array,
  centroids: Float32Array,
  shape: RoutingShape,
  a: RoutingAttrs,
): number[][][] {
  const { batch, heads, time, dim } = shape;
  const w = Math.min(a.window, time);
  const sets: number[][][] = Array.from({ length: batch * heads * time }, () => []);
  const assignment = assignNearest(vectors, centroids, shape);
  for (let row = 0; row < batch * heads; row++) {
    const head = row % heads;
    const base = row * time;
    if (a.causal) {
      const rank = (t: number) => {
        let k = 0;
        for (let s = 0; s < t; s++) if (assignment[base + s] === assignment[base + t]) k++;
        return k;
      };
      for (let t = 0; t < time; t++) {
        const m = Math.floor(rank(t) / w);
        const keys: number[] = [];
        for (let s = 0; s <= t; s++) {
          const ms = Math.floor(rank(s) / w);
          if (assignment[base + s] === assignment[base + t] && (ms === m || ms === m - 1))
            keys.push(base + s);
        }
        sets[base + t]!.push(keys);
      }
      continue;
    }
    for (let c = 0; c < a.clusters; c++) {
      const sim = (t: number) => {
        let dot = 0;
        for (let j = 0; j < dim; j++)
          dot += vectors[(base + t) * dim + j]! * centroids[(head * a.clusters + c) * dim + j]!;
        return dot;
      };
      const top = [...Array(time).keys()]
        .sort((x, y) => sim(y) - sim(x) || x - y)
        .slice(0, w)
        .map((t) => base + t)
        .sort((x, y) => x - y);
      for (const token of top) sets[token]!.push(top);
    }
  }
  return sets;
}

/** The plan's attended sets in the same form as {@link definitionSets}. */
function planSets(plan: RoutingPlan): number[][][] {
  const { batch, heads, time } = plan.shape;
  const sets: number[][][] = Array.from({ length: batch * heads * time }, () => []);
  for (const { token, keys } of attendedFromPlan(plan)) sets[token]!.push(keys);
  const order = (a: number[], b: number[]) => a.join(',').localeCompare(b.join(','));
  return sets.map((lists) => lists.sort(order));
}

/**
 * Dense masked attention over every membership: per (row, membership group) a full [time, time]
 * masked softmax, combined by the weight of each token in each group (1 / memberships, 0 if absent).
 */
function denseReference(qk: tf.Tensor, v: tf.Tensor, sets: number[][][], shape: RoutingShape, scale: number) {
  const { batch, heads, time } = shape;
  const rows = batch * heads;
  const groups = Math.max(1, ...sets.map((s) => s.length));
  const mask = new Float32Array(rows * groups * time * time).fill(-1e9);
  const weights = new Float32Array(rows * groups * time);
  sets.forEach((lists, token) => {
    const row = Math.floor(token / time);
    const t = token % time;
    lists.forEach((keys, g) => {
      weights[(row * groups + g) * time + t] = 1 / lists.length;
      for (const key of keys) mask[((row * groups + g) * time + t) * time + (key % time)] = 0;
    });
  });
  return tf.tidy(() => {
    const dv = v.shape[2]!;
    const scores = tf.mul(tf.matMul(qk as tf.Tensor3D, qk as tf.Tensor3D, false, true), scale);
    const masked = tf.add(tf.expandDims(scores, 1), tf.tensor4d(mask, [rows, groups, time, time]));
    const probs = tf.reshape(tf.softmax(masked), [rows * groups, time, time]) as tf.Tensor3D;
    const values = tf.reshape(tf.tile(tf.expandDims(v, 1), [1, groups, 1, 1]), [rows * groups, time, dv]);
    const out = tf.reshape(tf.matMul(probs, values as tf.Tensor3D), [rows, groups, time, dv]);
    return tf.sum(tf.mul(out, tf.tensor4d(weights, [rows, groups, time, 1])), 1);
  });
}

const shape: RoutingShape = { batch: 2, heads: 2, time: 12, dim: 4, valueDim: 3 };

describe('planRouting', () => {
  it('builds the attended sets of the definitions, causal and non-causal', () => {
    for (const [seed, a] of [
      [1, attrs({ causal: true, window: 2 })],
      [2, attrs({ causal: true, window: 5, clusters: 2 })],
      [3, attrs({ causal: false, window: 3 })],
      [4, attrs({ causal: false, window: 20 })],
    ] as const) {
      const { vectors, centroids } = problem(shape, a.clusters, seed);
      const plan = planRouting(vectors, centroids, shape, a);
      expect(planSets(plan)).toEqual(
        definitionSets(vectors, centroids, shape, a).map((l) =>
          l.sort((x, y) => x.join(',').localeCompare(y.join(','))),
        ),
      );
      expect(Array.from(plan.assignment)).toEqual(Array.from(assignNearest(vectors, centroids, shape)));
      expect(plan.clusterSizes.reduce((x, y) => x + y, 0)).toBe(shape.batch * shape.heads * shape.time);
    }
  });

  it('bounds the work by n x 2w (causal) and counts its FLOPs and bytes', () => {
    const long: RoutingShape = { batch: 1, heads: 1, time: 64, dim: 4 };
    const a = attrs({ heads: 1, clusters: 4, window: 4, causal: true });
    const { vectors, centroids } = problem(long, 4, 5);
    const plan = planRouting(vectors, centroids, long, a);
    // At most one partly filled window per cluster beyond n / w full ones.
    expect(plan.windows).toBeLessThanOrEqual(64 / 4 + 4);
    expect(plan.pairs).toBe(plan.windows * 4 * 8);
    expect(plan.pairs).toBeLessThan(64 * 64);
    expect(plan.keptPairs).toBeLessThanOrEqual(64 * 8);
    expect(plan.flops).toBe(plan.pairs * (2 * 4 + 1 + 1 + 4 + 2 * 4));
    expect(plan.bytes).toBeGreaterThan(0);
    expect(Array.from(plan.memberships).every((m) => m === 1)).toBe(true);
  });

  it('lets a non-causal token be in several clusters or in none', () => {
    const a = attrs({ window: 3 });
    const { vectors, centroids } = problem(shape, 3, 3);
    const plan = planRouting(vectors, centroids, shape, a);
    expect(plan.windows).toBe(shape.batch * shape.heads * 3);
    expect(plan.mask).toBeUndefined();
    expect(Array.from(plan.memberships).reduce((x, y) => x + y, 0)).toBe(plan.windows * 3);
  });

  it('refuses attributes and arrays that do not fit, saying what is wrong', () => {
    const { vectors, centroids } = problem(shape, 3, 1);
    const fails = (fn: () => unknown, pattern: RegExp) => {
      try {
        fn();
      } catch (error) {
        expect(isDynnError(error)).toBe(true);
        expect((error as Error).message).toMatch(pattern);
        return;
      }
      throw new Error(`expected an error matching ${pattern}`);
    };
    fails(
      () => validateRoutingAttrs(attrs({ heads: 3 }), 2),
      /heads must be an integer from 1 to the layer's 2/,
    );
    fails(() => validateRoutingAttrs(attrs({ clusters: 0 }), 2), /clusters must be an integer >= 1/);
    fails(() => validateRoutingAttrs(attrs({ window: 1.5 }), 2), /window must be an integer >= 1/);
    fails(() => validateRoutingAttrs(attrs({ decay: 1 }), 2), /decay must be in \[0, 1\)/);
    fails(
      () => validateRoutingAttrs(attrs({ commitment: -1 }), 2),
      /commitment must be a finite number >= 0/,
    );
    fails(() => validateRoutingAttrs(attrs({}), 2, 0), /integer number >= 1 of positions/);
    fails(() => planRouting(vectors, centroids, shape, attrs({ clusters: 4 })), /3 clusters per head/);
    fails(() => planRouting(vectors, centroids, shape, attrs({ heads: 1 })), /hold 2 heads/);
    fails(
      () => planRouting(vectors.subarray(1), centroids, shape, attrs({})),
      /vectors must be a Float32Array/,
    );
    expect(() => validateRoutingAttrs(attrs({}), 2, 12)).not.toThrow();
  });
});

describeEachBackend('routingAttention', (backend) => {
  const scale = 1.7;

  for (const a of [attrs({ causal: true, window: 2 }), attrs({ causal: false, window: 3 })]) {
    const label = a.causal ? 'causal' : 'non-causal';

    it(`equals dense attention under the plan's mask, outputs and gradients (${label})`, async () => {
      const { vectors, centroids } = problem(shape, a.clusters, 7);
      const plan = planRouting(vectors, centroids, shape, a);
      const sets = planSets(plan);
      const rows = shape.batch * shape.heads;
      await expectNoLeaks(async () => {
        const qk = tf.tensor3d(vectors, [rows, shape.time, shape.dim]);
        const v = tf.randomNormal([rows, shape.time, shape.valueDim!], 0, 1, 'float32', 3);
        const weights = tf.randomNormal([rows, shape.time, shape.valueDim!], 0, 1, 'float32', 4);
        const sparse = (x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.mul(routingAttention(x, y, plan, scale), weights));
        const dense = (x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.mul(denseReference(x, y, sets, shape, scale), weights));
        const out = routingAttention(qk, v, plan, scale);
        const expected = denseReference(qk, v, sets, shape, scale);
        await expectClose(out, expected, { label: `${label} output` });
        const [gq, gv] = tf.grads(sparse)([qk, v]);
        const [rq, rv] = tf.grads(dense)([qk, v]);
        await expectClose(gq!, rq!, { label: `${label} d qk` });
        await expectClose(gv!, rv!, { label: `${label} d v` });
        if (!a.causal) {
          // A token in no cluster outputs zero.
          const data = await out.data();
          const none = plan.memberships.indexOf(0);
          expect(none).toBeGreaterThanOrEqual(0);
          expect(Array.from(data.subarray(none * 3, none * 3 + 3))).toEqual([0, 0, 0]);
          expect(Math.max(...plan.memberships)).toBeGreaterThan(1);
        }
        tf.dispose([qk, v, weights, out, expected, gq!, gv!, rq!, rv!]);
      }, `${label} on ${backend}`);
    });
  }

  it('never lets a causal position see later ones: assignments and outputs up to t are unchanged', async () => {
    const a = attrs({ causal: true, window: 2 });
    const rows = shape.batch * shape.heads;
    const { vectors, centroids } = problem(shape, a.clusters, 11);
    const cut = 6;
    const changed = vectors.slice();
    const fresh = unitVectors(rows * shape.time, shape.dim, 99);
    for (let row = 0; row < rows; row++) {
      for (let t = cut + 1; t < shape.time; t++) {
        const at = (row * shape.time + t) * shape.dim;
        changed.set(fresh.subarray(at, at + shape.dim), at);
      }
    }
    const before = planRouting(vectors, centroids, shape, a);
    const after = planRouting(changed, centroids, shape, a);
    const early = (plan: RoutingPlan) => {
      const sets = planSets(plan);
      return sets.filter((_, token) => token % shape.time <= cut);
    };
    expect(early(after)).toEqual(early(before));
    for (let token = 0; token < rows * shape.time; token++) {
      if (token % shape.time <= cut) expect(after.assignment[token]).toBe(before.assignment[token]);
    }
    await expectNoLeaks(async () => {
      const v = tf.randomNormal([rows, shape.time, 3], 0, 1, 'float32', 5);
      const vChanged = tf.tidy(() =>
        tf.concat(
          [tf.slice(v, [0, 0, 0], [rows, cut + 1, 3]), tf.randomNormal([rows, shape.time - cut - 1, 3])],
          1,
        ),
      );
      const x = tf.tensor3d(vectors, [rows, shape.time, shape.dim]);
      const y = tf.tensor3d(changed, [rows, shape.time, shape.dim]);
      const outBefore = routingAttention(x, v, before);
      const outAfter = routingAttention(y, vChanged, after);
      const headBefore = tf.slice(outBefore, [0, 0, 0], [rows, cut + 1, 3]);
      const headAfter = tf.slice(outAfter, [0, 0, 0], [rows, cut + 1, 3]);
      await expectClose(headAfter, headBefore, { label: 'outputs up to the cut' });
      tf.dispose([v, vChanged, x, y, outBefore, outAfter, headBefore, headAfter]);
    });
  });

  it('unit-normalises vectors with a finite gradient at zero', async () => {
    await expectNoLeaks(async () => {
      const x = tf.tensor2d([3, 4, 0, 0], [2, 2]);
      const y = unitNormalize(x);
      await expectClose(y, [0.6, 0.8, 0, 0]);
      const g = tf.grad((t: tf.Tensor) => tf.sum(unitNormalize(t)))(x);
      expect(Array.from(await g.data()).every(Number.isFinite)).toBe(true);
      tf.dispose([x, y, g]);
    });
  });

  it('rejects tensors that do not match the plan', () => {
    const { vectors, centroids } = problem(shape, 3, 1);
    const plan = planRouting(vectors, centroids, shape, attrs({}));
    const qk = tf.zeros([4, 12, 4]);
    const v = tf.zeros([4, 12, 4]);
    expect(() => routingAttention(qk, v, plan)).toThrow(/v must be \[batch \* heads, time, 3\]/);
    tf.dispose([qk, v]);
  });
});

describeEachBackend('centroidUpdate and commitmentLoss', (backend) => {
  const small: RoutingShape = { batch: 2, heads: 2, time: 8, dim: 4 };
  const a = attrs({ clusters: 3, commitment: 0.25 });

  /** Data near e0 and e1 only, centroids e0, e1 and -e0: the third cluster receives no token. */
  function clustered() {
    const noise = unitVectors(2 * 2 * 8, 4, 21);
    const vectors = new Float32Array(2 * 2 * 8 * 4);
    for (let token = 0; token < 32; token++) {
      for (let j = 0; j < 4; j++)
        vectors[token * 4 + j] = 0.3 * noise[token * 4 + j]! + (j === token % 2 ? 1 : 0);
    }
    const e = (j: number, sign = 1) => [0, 1, 2, 3].map((i) => (i === j ? sign : 0));
    const centroids = Float32Array.from([...e(0), ...e(1), ...e(0, -1), ...e(0), ...e(1), ...e(0, -1)]);
    return { vectors: unitNormalizeAll(vectors), centroids };
  }
  const unitNormalizeAll = (x: Float32Array) => {
    const out = x.slice();
    for (let i = 0; i < out.length; i += 4) {
      const n = Math.hypot(...out.subarray(i, i + 4));
      for (let j = 0; j < 4; j++) out[i + j]! /= n;
    }
    return out;
  };

  it('matches the host update: unit centroids, empty clusters unchanged', async () => {
    const { vectors, centroids } = clustered();
    const plan = planRouting(vectors, centroids, small, a);
    expect(plan.clusterSizes[2]).toBe(0);
    expect(plan.clusterSizes[5]).toBe(0);
    const host = kmeansOnline(centroids, vectors, small, 0.6, plan.assignment);
    expect(Array.from(host.counts)).toEqual(Array.from(plan.clusterSizes));
    await expectNoLeaks(async () => {
      const c = tf.tensor3d(centroids, [2, 3, 4]);
      const x = tf.tensor3d(vectors, [4, 8, 4]);
      const next = centroidUpdate(c, x, plan, 0.6);
      await expectClose(next, host.centroids, { label: `update on ${backend}` });
      const values = await next.data();
      for (let slot = 0; slot < 6; slot++) {
        expect(Math.hypot(...values.subarray(slot * 4, slot * 4 + 4))).toBeCloseTo(1, 5);
      }
      expect(Array.from(values.subarray(8, 12))).toEqual([-1, 0, 0, 0]);
      expect(Array.from(values.subarray(20, 24))).toEqual([-1, 0, 0, 0]);
      tf.dispose([c, x, next]);
    });
  });

  it('computes the commitment loss and its gradient against a host reference', async () => {
    const { vectors, centroids } = clustered();
    const plan = planRouting(vectors, centroids, small, a);
    let total = 0;
    const gradient = new Float32Array(vectors.length);
    for (let token = 0; token < 32; token++) {
      const head = Math.floor(token / 8) % 2;
      const mu = (head * 3 + plan.assignment[token]!) * 4;
      for (let j = 0; j < 4; j++) {
        const d = vectors[token * 4 + j]! - centroids[mu + j]!;
        total += d * d;
        gradient[token * 4 + j] = (0.25 * 2 * d) / 32;
      }
    }
    await expectNoLeaks(async () => {
      const c = tf.tensor3d(centroids, [2, 3, 4]);
      const x = tf.tensor3d(vectors, [4, 8, 4]);
      const loss = commitmentLoss(x, c, plan);
      expect(loss.shape).toEqual([]);
      await expectClose(loss, (0.25 * total) / 32);
      const [gx, gc] = tf.grads((p: tf.Tensor, q: tf.Tensor) => commitmentLoss(p, q, plan))([x, c]);
      await expectClose(gx!, gradient, { tolerance: toleranceFor() });
      await expectClose(gc!, new Float32Array(24));
      tf.dispose([c, x, loss, gx!, gc!]);
    });
  });
});
