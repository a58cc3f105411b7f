import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { benchHead } from '../bench-envelope.js';
import {
  benchSortedNetTextMarkdown,
  QUICK_BENCH_SORTED_NET_TEXT,
  runBenchSortedNetText,
  TEXT_ARMS,
} from './bench-sorted-net-text.js';

// In-process rather than through the bin: the bench is reached from the CLI only once the
// sorted-net contribution lists it, and its result does not depend on how it is started.
it('runBenchSortedNetText --quick trains the three arms and reads each out at every depth', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-sorted-net-text-'));
  try {
    await useBackend('wasm');
    const before = tf.memory().numTensors;
    const run = await runBenchSortedNetText({ ...QUICK_BENCH_SORTED_NET_TEXT, out, progress: false });
    expect(tf.memory().numTensors).toBe(before);
    const { result } = run;
    expect(Object.keys(result)).toEqual([
      'model',
      'training',
      'counts',
      'unigram_bpc',
      'per_depth',
      'static_ms_per_batch',
      'exit_readout_max_diff',
      'goal',
    ]);
    expect(result.model).toMatchObject({ vocab: 81, layers: 3, width: 16, context: 8, heads: 2 });
    expect(result.training).toMatchObject({ steps: 60, batch_size: 16, sorted_per_step: 2 });
    expect(Object.keys(result.training.arms)).toEqual([...TEXT_ARMS]);
    for (const arm of TEXT_ARMS) {
      expect(result.training.arms[arm].seconds).toBeGreaterThan(0);
      expect(Number.isFinite(result.training.arms[arm].end_loss_bits)).toBe(true);
    }
    expect(result.counts.test_windows).toBe(300);
    expect(result.unigram_bpc).toBeLessThan(Math.log2(81));

    // One row per layer, reading out after k layers at depth 2k (attention and MLP blocks).
    expect(result.per_depth.map((r) => [r.layers, r.depth])).toEqual([
      [1, 2],
      [2, 4],
      [3, 6],
    ]);
    for (const row of result.per_depth) {
      expect(Object.keys(row)).toEqual([
        'layers',
        'depth',
        'mflops_per_char',
        'ms_per_batch',
        'ordinary',
        'sorted',
        'early_exit',
      ]);
      expect(row.ms_per_batch).toBeGreaterThan(0);
      for (const arm of TEXT_ARMS) {
        expect(row[arm].bpc).toBeGreaterThan(0);
        expect(row[arm].accuracy).toBeGreaterThanOrEqual(0);
        expect(row[arm].accuracy).toBeLessThanOrEqual(1);
      }
    }
    // A shallower sub-network computes less: each layer adds the same count.
    const flops = result.per_depth.map((r) => r.mflops_per_char);
    expect(flops[0]).toBeGreaterThan(0);
    expect(flops[1]! - flops[0]!).toBeCloseTo(flops[2]! - flops[1]!, 6);
    expect(result.static_ms_per_batch).toBeGreaterThan(0);
    // The nested read-out with the early-exit weights is the early-exit model's own exits.
    expect(result.exit_readout_max_diff).toBeLessThan(1e-4);

    const { goal } = result;
    expect(goal.shallow_gaps.map((g) => g.layers)).toEqual([1, 2]);
    const full = result.per_depth[2]!;
    expect(goal.full_depth_gap_bpc).toBeCloseTo(full.sorted.bpc - full.ordinary.bpc, 10);
    expect(goal.held).toBe(goal.shallow_better && goal.full_depth_close);

    expect(await readFile(join(out, 'bpc-depth.svg'), 'utf8')).toMatch(/<svg/);
    const markdown = benchSortedNetTextMarkdown(run, benchHead('sorted-net/text', true));
    expect(markdown).toContain('| layers |');
    expect(markdown).toContain('Goal (');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 120_000);
