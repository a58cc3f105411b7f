import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';
import type { BenchEarlyExitResult } from './bench-early-exit.js';

it('dynn bench early-exit --quick trains, calibrates and measures both networks', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-early-exit-'));
  try {
    const run = await runDynn(['bench', 'early-exit', '--quick', '--json', '--out', out]);
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
      'dynamic',
      'speedup',
      'flops_reduction',
      'accuracy_drop_pp',
      'batch_1',
      'slowdown',
      'error',
    ]);
    expect(envelope).toMatchObject({ bench: 'early-exit', backend: 'wasm', quick: true, error: null });
    const result = envelope as BenchEarlyExitResult;
    expect(Object.keys(result.full)).toEqual(['accuracy', 'mflops_per_sample', 'ms_per_batch']);
    expect(Object.keys(result.dynamic)).toEqual([
      'accuracy',
      'mflops_per_sample',
      'ms_per_batch',
      'exit_histogram',
    ]);
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
    // The report folder holds the same envelope the command printed.
    expect(JSON.parse(await readFile(join(out, 'result.json'), 'utf8'))).toEqual(envelope);
    // Without --json: the markdown table, saying it is a smoke run.
    const docs = join(out, 'bench.md');
    const text = await runDynn(['bench', 'early-exit', '--quick', '--out', out, '--update-docs', docs]);
    expect(text.code).toBe(0);
    expect(text.out).toContain('early exit (calibrated)');
    expect(text.out).toContain('smoke run');
    expect(await readFile(docs, 'utf8')).toContain('<!-- bench:early-exit:start -->');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 120_000);
