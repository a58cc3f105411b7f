import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';
import type { BenchSortedNetResult } from './bench-sorted-net.js';

it('dynn bench sorted-net --quick trains once, measures 16 sub-networks and each width alone', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-sorted-net-'));
  try {
    const docs = join(out, 'bench.md');
    const run = await runDynn([
      'bench',
      'sorted-net',
      '--quick',
      '--json',
      '--out',
      out,
      '--update-docs',
      docs,
    ]);
    expect(run.err).not.toMatch(/Error/);
    expect(run.code).toBe(0);
    const envelope = JSON.parse(run.out);
    expect(Object.keys(envelope)).toEqual([
      'bench',
      'backend',
      'date',
      'machine',
      'quick',
      'full',
      'submodels',
      'alone',
      'goals',
      'error',
    ]);
    expect(envelope).toMatchObject({ bench: 'sorted-net', backend: 'wasm', quick: true, error: null });
    const result = envelope as BenchSortedNetResult;
    expect(Object.keys(result.full)).toEqual(['accuracy', 'mflops_per_sample']);
    // 4 widths x 4 depths, each measured against the full network.
    expect(result.submodels.map((s) => [s.width, s.depth])).toEqual(
      [0.25, 0.5, 0.75, 1].flatMap((w) => [0, 1, 2, 3].map((d) => [w, d])),
    );
    for (const s of result.submodels) {
      expect(Object.keys(s)).toEqual([
        'width',
        'depth',
        'accuracy',
        'mflops_per_sample',
        'ms_per_batch',
        'ms_batch_1',
        'speedup',
        'flops_reduction',
      ]);
      expect(s.accuracy).toBeGreaterThanOrEqual(0);
      expect(s.accuracy).toBeLessThanOrEqual(1);
      expect(s.ms_per_batch).toBeGreaterThan(0);
      expect(s.ms_batch_1).toBeGreaterThan(0);
      expect(s.flops_reduction).toBeCloseTo(result.full.mflops_per_sample / s.mflops_per_sample, 10);
    }
    // The widest, deepest sub-network computes what the full network computes.
    const largest = result.submodels.at(-1)!;
    expect(largest.mflops_per_sample).toBeCloseTo(result.full.mflops_per_sample, 6);
    // (Float rounding of the nested layers against plain ones may flip a near tie: one image in 128.)
    expect(Math.abs(largest.accuracy - result.full.accuracy)).toBeLessThanOrEqual(1 / 128);
    // Narrower or shallower computes less.
    const flops = (w: number, d: number) =>
      result.submodels.find((s) => s.width === w && s.depth === d)!.mflops_per_sample;
    expect(flops(0.5, 3)).toBeLessThan(flops(1, 3));
    expect(flops(1, 1)).toBeLessThan(flops(1, 3));
    expect(flops(0.25, 0)).toBeLessThan(flops(0.5, 0));
    expect(result.alone.map((a) => a.width)).toEqual([0.25, 0.5, 0.75, 1]);
    for (const a of result.alone) {
      expect(Object.keys(a)).toEqual(['width', 'accuracy_sorted', 'accuracy_alone']);
      expect(a.accuracy_sorted).toBe(
        result.submodels.find((s) => s.width === a.width && s.depth === 3)!.accuracy,
      );
    }
    expect(Object.keys(result.goals)).toEqual([
      'accuracy_vs_full',
      'smallest_flops',
      'alone_within_1pp',
      'speedup_vs_flops',
      'speedup_rises',
    ]);
    for (const goal of Object.values(result.goals)) expect(typeof goal.met).toBe('boolean');
    expect(result.goals.smallest_flops.ratio).toBeCloseTo(flops(0.25, 0) / result.full.mflops_per_sample, 10);

    expect(await readFile(join(out, 'pareto.svg'), 'utf8')).toMatch(/^<svg/);
    const pareto = JSON.parse(await readFile(join(out, 'pareto.json'), 'utf8'));
    expect(pareto.points).toHaveLength(16);
    expect(pareto.front.length).toBeGreaterThan(0);
    expect(pareto.alone).toHaveLength(4);
    // The report folder holds the same envelope the command printed.
    expect(JSON.parse(await readFile(join(out, 'result.json'), 'utf8'))).toEqual(envelope);
    const markdown = await readFile(docs, 'utf8');
    expect(markdown).toContain('<!-- bench:sorted-net:start -->');
    expect(markdown).toContain('smoke run');
    expect(markdown).toContain('| nested w0.25 d0 |');
    expect(markdown).toContain('trained alone');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 300_000);
