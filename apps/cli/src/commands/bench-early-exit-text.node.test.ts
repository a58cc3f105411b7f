import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';
import type { BenchEarlyExitTextResult } from './bench-early-exit-text.js';

it('dynn bench early-exit text --quick trains, calibrates and measures the static and early-exit networks', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-early-exit-text-'));
  try {
    const run = await runDynn(['bench', 'early-exit', 'text', '--quick', '--json', '--out', out]);
    expect(run.code).toBe(0);
    const envelope = JSON.parse(run.out);
    expect(Object.keys(envelope)).toEqual([
      'bench',
      'backend',
      'date',
      'machine',
      'quick',
      'model',
      'training',
      'counts',
      'unigram_bpc',
      'full',
      'operating_points',
      'per_layer',
      'layer1_correct_share',
      'error',
    ]);
    expect(envelope).toMatchObject({ bench: 'early-exit/text', backend: 'wasm', quick: true, error: null });
    const result = envelope as BenchEarlyExitTextResult;
    expect(result.model).toMatchObject({ vocab: 81, layers: 3, width: 16, context: 8 });
    expect(result.counts.test_windows).toBe(300);
    expect(Object.keys(result.full)).toEqual([
      'bpc',
      'accuracy',
      'mean_layers',
      'mflops_per_char',
      'ms_per_batch',
    ]);
    // The static network runs every block for every character.
    expect(result.full.mean_layers).toBe(3);
    // Even 80 steps beat the unigram code, which beats a uniform one over 81 symbols.
    expect(result.unigram_bpc).toBeLessThan(Math.log2(81));
    expect(result.full.bpc).toBeLessThan(result.unigram_bpc);
    expect(result.operating_points).toHaveLength(3);
    for (const point of result.operating_points) {
      expect(point.exit_histogram).toHaveLength(3);
      expect(point.exit_histogram.reduce((a, b) => a + b, 0)).toBe(300);
      expect(point.mean_layers).toBeGreaterThanOrEqual(1);
      expect(point.mean_layers).toBeLessThanOrEqual(3);
      expect(point.bpc).toBeGreaterThan(0);
      expect(point.speedup).toBeCloseTo(result.full.ms_per_batch / point.ms_per_batch, 10);
    }
    // Threshold 0: every character leaves after block 1, which costs a fraction of the static
    // network's FLOPs.
    const last = result.operating_points[2]!;
    expect(last.threshold).toBe(0);
    expect(last.exit_histogram).toEqual([300, 0, 0]);
    expect(last.mean_layers).toBe(1);
    expect(last.mflops_per_char).toBeLessThan(result.full.mflops_per_char / 2);
    // Served at the first exit, every character's BPC is the first exit's.
    expect(last.bpc).toBeCloseTo(result.per_layer[0]!.bpc, 5);
    expect(result.per_layer.map((l) => l.layer)).toEqual([1, 2, 3]);
    expect(result.per_layer[2]!.bpc).toBeCloseTo(result.full.bpc, 4);
    expect(result.layer1_correct_share).toBe(result.per_layer[0]!.accuracy);
    expect(await readFile(join(out, 'bpc-layers.svg'), 'utf8')).toMatch(/<svg/);
    expect(JSON.parse(await readFile(join(out, 'result.json'), 'utf8'))).toEqual(envelope);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 120_000);
