import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { benchEarlyExitMarkdown, runBenchEarlyExit } from './bench-early-exit.js';

it('bench early-exit trains, calibrates and measures both networks (smoke run)', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-early-exit-'));
  try {
    const run = await runBenchEarlyExit({
      epochs: 1,
      trainLimit: 512,
      testLimit: 300,
      thresholds: [0.1, 0.9, 0.99],
      // A barely trained network is never sure: 0.1 (every row leaves at the first exit) is the cheapest point, and any loss is accepted so it is picked.
      maxAccuracyDrop: 1,
      warmup: 0,
      repeats: 1,
      progress: false,
      out,
    });
    const { result } = run;
    expect(Object.keys(result)).toEqual([
      'backend',
      'full',
      'dynamic',
      'speedup',
      'flops_reduction',
      'accuracy_drop_pp',
      'batch_1',
      'slowdown',
    ]);
    expect(Object.keys(result.full)).toEqual(['accuracy', 'mflops_per_sample', 'ms_per_batch']);
    expect(Object.keys(result.dynamic)).toEqual([
      'accuracy',
      'mflops_per_sample',
      'ms_per_batch',
      'exit_histogram',
    ]);
    expect(result.backend).toBe('wasm');
    // Three exits and the final classifier serve every test image exactly once.
    expect(result.dynamic.exit_histogram).toHaveLength(4);
    expect(result.dynamic.exit_histogram.reduce((a, b) => a + b, 0)).toBe(300);
    expect(result.dynamic.mflops_per_sample).toBeLessThanOrEqual(result.full.mflops_per_sample);
    expect(result.flops_reduction).toBeCloseTo(
      result.full.mflops_per_sample / result.dynamic.mflops_per_sample,
      10,
    );
    expect(result.speedup).toBeCloseTo(result.full.ms_per_batch / result.dynamic.ms_per_batch, 10);
    expect(result.accuracy_drop_pp).toBeCloseTo((result.full.accuracy - result.dynamic.accuracy) * 100, 10);
    expect(result.batch_1.full_ms).toBeGreaterThan(0);
    expect(result.batch_1.dynamic_ms).toBeGreaterThan(0);
    // The attacked depth is a mean exit position (1 = first exit, 4 = final classifier).
    expect(result.slowdown.rows).toBe(300);
    for (const depth of [result.slowdown.clean_mean_exit_depth, result.slowdown.attacked_mean_exit_depth]) {
      expect(depth).toBeGreaterThanOrEqual(1);
      expect(depth).toBeLessThanOrEqual(4);
    }
    expect(await readFile(join(out, 'pareto.svg'), 'utf8')).toMatch(/^<svg/);
    const sweep = JSON.parse(await readFile(join(out, 'pareto.json'), 'utf8'));
    expect(sweep.points).toHaveLength(3);
    expect(benchEarlyExitMarkdown(run)).toContain('early exit (calibrated)');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 60_000);
