import { createRng } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  QUICK_SPARSE_ATTENTION_RETRIEVAL,
  QUICK_SPARSE_ATTENTION_TEXT,
  retrievalBatch,
  retrievalMarkdown,
  runSparseAttentionRetrieval,
  runSparseAttentionText,
  textQualityMarkdown,
} from './bench-sparse-attention-quality.js';

describe('retrievalBatch', () => {
  const spec = { length: 40, fillers: 5, values: 3, early: 6 };

  it('places the marker and its value early, the marker again last, and nothing else of either', () => {
    const batch = retrievalBatch(createRng(7), 50, spec);
    const marker = spec.fillers;
    for (let r = 0; r < 50; r++) {
      const row = batch.tokens.subarray(r * spec.length, (r + 1) * spec.length);
      const key = batch.keyPositions[r]!;
      expect(key).toBeLessThan(spec.early - 1);
      expect(row[key]).toBe(marker);
      expect(row[key + 1]).toBe(batch.answers[r]);
      expect(row[spec.length - 1]).toBe(marker);
      expect(batch.answers[r]).toBeGreaterThan(marker);
      expect(batch.answers[r]).toBeLessThanOrEqual(marker + spec.values);
      // Every other token is filler: the answer is the only value in the row.
      const others = [...row].filter((_, t) => t !== key && t !== key + 1 && t !== spec.length - 1);
      expect(others.every((token) => token < spec.fillers)).toBe(true);
    }
    // Every value is drawn.
    expect(new Set(batch.answers).size).toBe(spec.values);
  });

  it('is determined by the seed', () => {
    const a = retrievalBatch(createRng(3), 4, spec);
    const b = retrievalBatch(createRng(3), 4, spec);
    expect(b.tokens).toEqual(a.tokens);
    expect(b.answers).toEqual(a.answers);
  });
});

it('the quick Austen run trains the three arms per seed and judges the goal on the means', async () => {
  const result = await runSparseAttentionText({ ...QUICK_SPARSE_ATTENTION_TEXT, progress: false });
  const baseline = tf.memory().numTensors;
  const seeds = QUICK_SPARSE_ATTENTION_TEXT.seeds!;
  expect(result.arms.map((a) => a.arm)).toEqual(['full', 'local', 'routing']);
  for (const a of result.arms) {
    expect(a.bpc_per_seed).toHaveLength(seeds.length);
    for (const v of a.bpc_per_seed) expect(Number.isFinite(v) && v > 0).toBe(true);
    expect(a.bpc).toBeCloseTo(a.bpc_per_seed.reduce((s, v) => s + v, 0) / seeds.length, 10);
    expect(Number.isFinite(a.bpc_std)).toBe(true);
    expect(a.ms_per_step).toBeGreaterThan(0);
    expect(a.params).toBeGreaterThan(0);
  }
  const [full, local, routing] = result.arms.map((a) => a.bpc);
  expect(result.goal.routing_vs_full).toBeCloseTo(routing! / full!, 10);
  expect(result.goal.routing_le_local).toBe(routing! <= local!);
  expect(result.goal.within_2pct_of_full).toBe(routing! / full! <= 1.02);
  expect(result.goal.met).toBe(result.goal.routing_le_local && result.goal.within_2pct_of_full);
  expect(textQualityMarkdown(result)).toMatch(/local \+ routing.*\n[\s\S]*Goal: /);
  // A second run leaves no tensor behind (the first also set up the backend).
  await runSparseAttentionText({ ...QUICK_SPARSE_ATTENTION_TEXT, progress: false });
  expect(tf.memory().numTensors).toBe(baseline);
}, 60_000);

it('the quick retrieval run trains local and routing per seed and judges the goal on the means', async () => {
  const result = await runSparseAttentionRetrieval({ ...QUICK_SPARSE_ATTENTION_RETRIEVAL, progress: false });
  const baseline = tf.memory().numTensors;
  const seeds = QUICK_SPARSE_ATTENTION_RETRIEVAL.seeds!;
  expect(result.arms.map((a) => a.arm)).toEqual(['local', 'routing']);
  for (const a of result.arms) {
    expect(a.accuracy_per_seed).toHaveLength(seeds.length);
    for (const v of a.accuracy_per_seed) expect(v >= 0 && v <= 1).toBe(true);
    expect(a.accuracy).toBeCloseTo(a.accuracy_per_seed.reduce((s, v) => s + v, 0) / seeds.length, 10);
    expect(a.chance).toBeCloseTo(1 / result.config.values, 10);
    expect(a.ms_per_step).toBeGreaterThan(0);
  }
  const [local, routing] = result.arms;
  expect(result.goal.local_near_chance).toBe(local!.accuracy < 2 * local!.chance);
  expect(result.goal.routing_at_least_90).toBe(routing!.accuracy >= 0.9);
  expect(result.goal.met).toBe(result.goal.local_near_chance && result.goal.routing_at_least_90);
  expect(retrievalMarkdown(result)).toMatch(/Goal: /);
  await runSparseAttentionRetrieval({ ...QUICK_SPARSE_ATTENTION_RETRIEVAL, progress: false });
  expect(tf.memory().numTensors).toBe(baseline);
}, 60_000);
