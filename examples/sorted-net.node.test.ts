import { useBackend } from '@dynn/core';
import { guardLeaks } from '@dynn/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { main as nestedKeras } from './snippets/sorted-net-keras.js';
import { DEPTHS, main as nestedDigits, WIDTHS } from './sorted-net/digits-nested.js';

// The sorted-net example reads the UCI digits from the file system and writes a model file, so it
// runs in Node only; on wasm, where a few seconds train it (the cpu backend's convolutions would
// take minutes).
describe('sorted-net example on wasm', () => {
  // The backend first, so the leak guard counts its tensors.
  beforeAll(() => useBackend('wasm'));
  guardLeaks();

  it('sorted-net/digits-nested: one training, every sub-network usable, narrower and shallower ones cheaper, the export exact', async () => {
    const lines: string[] = [];
    const result = await nestedDigits('wasm', (line) => lines.push(line));
    expect(lines[0]).toMatch(/^knobs: s0conv#out \(8\), .*; stages: 2$/);
    expect(result.rows).toHaveLength(WIDTHS.length * DEPTHS.length);
    const row = (width: number, depth: number) =>
      result.rows.find((r) => r.width === width && r.depth === depth)!;
    const full = row(1, 1);
    // Trained 6 epochs on 1,078 digits: the full network and a half-width one are well above chance (10%).
    expect(full.accuracy).toBeGreaterThan(0.85);
    expect(row(0.5, 1).accuracy).toBeGreaterThan(0.6);
    for (const r of result.rows)
      expect(r.accuracy, `width ${r.width}, depth ${r.depth}`).toBeGreaterThan(0.2);
    // Batch-norm statistics shared by every sub-network in training fit none of them: recalibrated
    // ones do far better (about 10-20% before, 40-97% after, when this was written).
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    expect(mean(result.rows.map((r) => r.accuracy))).toBeGreaterThan(
      mean(result.rows.map((r) => r.uncalibratedAccuracy)) + 0.2,
    );
    // Narrower computes less at every depth, shallower at every width: the report counts what ran.
    for (const depth of DEPTHS) {
      for (let i = 1; i < WIDTHS.length; i++) {
        expect(row(WIDTHS[i - 1]!, depth).mflops).toBeLessThan(row(WIDTHS[i]!, depth).mflops);
      }
    }
    for (const width of WIDTHS) expect(row(width, 0).mflops).toBeLessThan(row(width, 1).mflops);
    // A quarter of the channels costs well under a quarter of the FLOPs (convolutions scale with in x out).
    expect(row(0.25, 1).mflops).toBeLessThan(0.25 * full.mflops);
    for (const r of result.rows) expect(r.ms).toBeGreaterThan(0);
    // The search keeps to its budget.
    expect(result.search.mflops).toBeLessThanOrEqual(result.search.budgetMflops);
    expect(result.search.evaluated).toBeGreaterThan(1);
    expect(result.search.accuracy).toBeGreaterThan(0.2);
    // The exported file holds core ops only, fewer parameters, and computes what the nested model computes.
    expect(result.exported.domains).toEqual(['core']);
    expect(result.exported.paramsExported).toBeLessThan(0.5 * result.exported.paramsNested);
    expect(result.exported.maxDifference).toBeLessThan(1e-4);
    expect(lines.at(-1)).toMatch(/^exported w0\.5-d1: \d+ parameters/);
  });

  it('snippets/sorted-net-keras nests an imported Keras model: the full sub-network is the model, half width costs less', async () => {
    const lines: string[] = [];
    const result = await nestedKeras('wasm', (line) => lines.push(line));
    // The residual stream of each stage, each expansion and the head conv are knobs.
    expect(result.knobs.map(([, size]) => size).sort((a, b) => a - b)).toEqual([8, 12, 24, 32, 36]);
    expect(result.stageBlocks).toEqual([1, 1]);
    expect(result.fullDifference).toBeLessThan(1e-4);
    expect(result.flops.half).toBeLessThan(0.5 * result.flops.full);
    expect(lines.at(-1)).toMatch(/^full sub-network: max difference/);
  });
});
