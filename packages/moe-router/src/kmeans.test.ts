import { createRng, isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { balancedKMeans, kmeans } from './kmeans.js';

/** `perCluster` rows around each of `centres` (normal noise of `spread`), cluster after cluster. */
function planted(centres: number[][], perCluster: number, spread: number, seed: number) {
  const rng = createRng(seed);
  const dims = centres[0]!.length;
  const data = new Float32Array(centres.length * perCluster * dims);
  const truth = new Int32Array(centres.length * perCluster);
  centres.forEach((centre, c) => {
    for (let r = 0; r < perCluster; r++) {
      const row = c * perCluster + r;
      truth[row] = c;
      for (let j = 0; j < dims; j++) data[row * dims + j] = centre[j]! + spread * rng.normal();
    }
  });
  return { data, truth, dims };
}

/** True when two assignments are the same partition (cluster numbers may differ). */
function samePartition(a: Int32Array, b: Int32Array): boolean {
  const map = new Map<number, number>();
  const back = new Map<number, number>();
  for (let i = 0; i < a.length; i++) {
    if ((map.get(a[i]!) ?? b[i]) !== b[i] || (back.get(b[i]!) ?? a[i]) !== a[i]) return false;
    map.set(a[i]!, b[i]!);
    back.set(b[i]!, a[i]!);
  }
  return true;
}

const centres = [
  [0, 0, 0],
  [10, 0, 0],
  [0, 10, 0],
  [0, 0, 10],
  [10, 10, 10],
];

describe('kmeans', () => {
  it('recovers planted clusters, with centroids at their means', () => {
    const { data, truth, dims } = planted(centres, 20, 0.5, 1);
    const result = kmeans(data, dims, { k: 5, seed: 3 });
    expect(samePartition(result.assignment, truth)).toBe(true);
    expect(Array.from(result.sizes)).toEqual([20, 20, 20, 20, 20]);
    // Each centroid lies near a planted centre, and is the mean of its rows.
    for (let c = 0; c < 5; c++) {
      const centroid = Array.from(result.centroids.subarray(c * dims, (c + 1) * dims));
      const near = centres.some((p) => p.every((v, j) => Math.abs(v - centroid[j]!) < 0.5));
      expect(near).toBe(true);
      const mean = [0, 0, 0];
      result.assignment.forEach((a, i) => {
        if (a === c) for (let j = 0; j < dims; j++) mean[j]! += data[i * dims + j]! / 20;
      });
      mean.forEach((v, j) => {
        expect(centroid[j]).toBeCloseTo(v, 4);
      });
    }
    let inertia = 0;
    for (let i = 0; i < truth.length; i++) {
      const c = result.assignment[i]!;
      for (let j = 0; j < dims; j++) inertia += (data[i * dims + j]! - result.centroids[c * dims + j]!) ** 2;
    }
    expect(result.inertia).toBeCloseTo(inertia, 3);
    expect(result.iterations).toBeGreaterThanOrEqual(1);
  });

  it('is deterministic given its seed', () => {
    const { data, dims } = planted(centres, 12, 3, 2);
    const a = kmeans(data, dims, { k: 7, seed: 11 });
    const b = kmeans(data, dims, { k: 7, seed: 11 });
    expect(Array.from(a.assignment)).toEqual(Array.from(b.assignment));
    expect(Array.from(a.centroids)).toEqual(Array.from(b.centroids));
    expect(a.inertia).toBe(b.inertia);
  });

  it('stops at its iteration limit and handles k = 1 and k = rows', () => {
    const { data, dims } = planted(centres, 6, 2, 4);
    expect(kmeans(data, dims, { k: 4, iterations: 1 }).iterations).toBe(1);
    const one = kmeans(data, dims, { k: 1 });
    expect(Array.from(new Set(one.assignment))).toEqual([0]);
    const all = kmeans(data, dims, { k: 30 });
    expect(all.inertia).toBeCloseTo(0, 6);
    expect(Array.from(all.sizes).every((s) => s === 1)).toBe(true);
  });

  it('leaves no cluster empty on distinct rows, and copes with duplicate rows', () => {
    // Tight blobs of unequal sizes with more clusters than blobs: many seeds, never an empty cluster.
    const { data, dims } = planted(centres.slice(0, 3), 7, 0.05, 9);
    for (let seed = 0; seed < 20; seed++) {
      const result = kmeans(data, dims, { k: 9, seed });
      expect(Math.min(...result.sizes)).toBeGreaterThanOrEqual(1);
    }
    // A starting centroid far from every row gets none: it is re-seeded with the row farthest from
    // its centroid (11, 5 away from 6), leaving {0, 1, 2}, {10} and {11}.
    const line = Float32Array.from([0, 1, 2, 10, 11]);
    const reseeded = kmeans(line, 1, { k: 3, initialCentroids: Float32Array.from([1, 6, 100]) });
    expect(Array.from(reseeded.sizes).every((s) => s >= 1)).toBe(true);
    expect(Array.from(reseeded.assignment)).toEqual([0, 0, 0, 1, 2]);
    expect(reseeded.inertia).toBeCloseTo(2, 5);
    // Four copies of one point and two of another, in three clusters: one cluster must stay empty.
    const duplicates = Float32Array.from([0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5]);
    const result = kmeans(duplicates, 2, { k: 3, seed: 1 });
    expect(result.sizes.reduce((a, b) => a + b, 0)).toBe(6);
    expect(result.inertia).toBe(0);
  });

  it('refuses bad k, NaN values and ragged data, naming the fix', () => {
    const data = Float32Array.from([0, 1, 2, 3, 4, 5]);
    const nan = Float32Array.from([0, 1, 2, Number.NaN]);
    expect(() => kmeans(data, 2, { k: 4 })).toThrow(/k is 4 but the data has only 3 rows/);
    expect(() => kmeans(data, 2, { k: 0 })).toThrow(/k must be an integer >= 1/);
    expect(() => kmeans(data, 4, { k: 1 })).toThrow(/not a whole number of rows of 4 dims/);
    expect(() => kmeans(data, 2, { k: 1, iterations: 0 })).toThrow(/iterations must be an integer/);
    expect(() => kmeans(nan, 2, { k: 1 })).toThrow(/row 1, dim 1 holds NaN/);
    expect(() => balancedKMeans(nan, 2, { k: 1 })).toThrow(/balancedKMeans: row 1/);
    expect(() => kmeans(data, 2, { k: 9 })).toThrow(
      expect.toSatisfy((e: unknown) => isDynnError(e, 'INVALID_OPTION')),
    );
    expect(() => kmeans(nan, 2, { k: 1 })).toThrow(
      expect.toSatisfy((e: unknown) => isDynnError(e, 'INVALID_INPUT')),
    );
  });
});

describe('balancedKMeans', () => {
  it('makes clusters of exactly equal size and recovers balanced planted clusters', () => {
    const { data, truth, dims } = planted(centres, 16, 0.5, 5);
    const result = balancedKMeans(data, dims, { k: 5, seed: 2 });
    expect(Array.from(result.sizes)).toEqual([16, 16, 16, 16, 16]);
    expect(samePartition(result.assignment, truth)).toBe(true);
  });

  it('keeps sizes exact on unbalanced data, and within one when k does not divide the rows', () => {
    // Two far-apart blobs of 30 and 6 rows: plain k-means follows the blobs, balanced does not.
    const { data, dims } = planted([[0, 0, 0]], 30, 1, 6);
    const small = planted([[20, 20, 20]], 6, 1, 7);
    const both = new Float32Array(data.length + small.data.length);
    both.set(data);
    both.set(small.data, data.length);
    const plain = kmeans(both, dims, { k: 4, seed: 1 });
    expect(Math.max(...plain.sizes)).toBeGreaterThan(9);
    const balanced = balancedKMeans(both, dims, { k: 4, seed: 1 });
    expect(Array.from(balanced.sizes)).toEqual([9, 9, 9, 9]);
    const counts = new Int32Array(4);
    for (const a of balanced.assignment) counts[a]!++;
    expect(Array.from(counts)).toEqual([9, 9, 9, 9]);
    // 36 rows into 5 clusters: one of 8, four of 7.
    const five = balancedKMeans(both, dims, { k: 5, seed: 1 });
    expect(Array.from(five.sizes).sort()).toEqual([7, 7, 7, 7, 8]);
  });

  it('is deterministic given its seed, and its centroids are its clusters means', () => {
    const { data, dims } = planted(centres, 10, 4, 8);
    const a = balancedKMeans(data, dims, { k: 10, seed: 4 });
    const b = balancedKMeans(data, dims, { k: 10, seed: 4 });
    expect(Array.from(a.assignment)).toEqual(Array.from(b.assignment));
    expect(Array.from(a.centroids)).toEqual(Array.from(b.centroids));
    for (let c = 0; c < 10; c++) {
      const mean = [0, 0, 0];
      a.assignment.forEach((x, i) => {
        if (x === c) for (let j = 0; j < dims; j++) mean[j]! += data[i * dims + j]! / 5;
      });
      mean.forEach((v, j) => {
        expect(a.centroids[c * dims + j]).toBeCloseTo(v, 4);
      });
    }
  });
});
