import { useBackend } from '@dynn/core';
import { guardLeaks } from '@dynn/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { main as digitsMoe, EXPERTS, K } from './moe-router/digits-moe.js';

// The moe-router example reads the UCI digits from the file system, so it runs in Node only; on
// wasm, where it trains in seconds.
describe('moe-router example on wasm', () => {
  // The backend first, so the leak guard counts its tensors.
  beforeAll(() => useBackend('wasm'));
  guardLeaks();

  it('moe-router/digits-moe: a trained top-2-of-8 MoE, its experts computing only their digits, capacity and k per call', async () => {
    const lines: string[] = [];
    const result = await digitsMoe('wasm', (line) => lines.push(line));
    expect(lines[0]).toMatch(/^digits per expert: (\d+ ){8}\(359 digits x 2 experts each\)$/);
    const row = (k: number, capacityFactor: number) =>
      result.rows.find((r) => r.k === k && r.capacityFactor === capacityFactor)!;
    const own = row(K, 0);
    // Trained 20 epochs on 1,438 digits: well above chance (10%); 96.9% when this was written.
    expect(own.accuracy).toBeGreaterThan(0.9);
    // Dropless: every digit reached its two experts.
    expect(own.load).toHaveLength(EXPERTS);
    expect(own.load.reduce((a, b) => a + b, 0)).toBe(K * result.testDigits);
    expect(own.dropped).toBe(0);
    expect(own.unrouted).toBe(0);
    // The balance loss kept every expert in use.
    for (const load of own.load) expect(load).toBeGreaterThan(0);
    expect(result.balanceLoss).toBeLessThan(1.5);
    // The experts executed k of the 8 experts' work: a quarter, and top-1 an eighth.
    expect(own.expertFlops).toBeCloseTo((K / EXPERTS) * result.denseExpertFlops, 6);
    expect(row(1, 0).expertFlops).toBeCloseTo(result.denseExpertFlops / EXPERTS, 6);
    expect(row(EXPERTS, 0).load).toEqual(new Array(EXPERTS).fill(result.testDigits));
    // Capacity per call: no expert above ceil(359 * 2 * factor / 8); dropped pairs cost nothing.
    for (const factor of [1, 0.5]) {
      const limited = row(K, factor);
      const capacity = Math.ceil((result.testDigits * K * factor) / EXPERTS);
      for (const load of limited.load) expect(load).toBeLessThanOrEqual(capacity);
      expect(limited.load.reduce((a, b) => a + b, 0) + limited.dropped).toBe(K * result.testDigits);
      expect(limited.expertFlops).toBeLessThan(own.expertFlops);
    }
    expect(row(K, 0.5).dropped).toBeGreaterThan(row(K, 1).dropped);
    // Half an even share per expert leaves some digits with no expert: the residual carries them.
    expect(row(K, 0.5).unrouted).toBeGreaterThan(0);
    expect(row(K, 0.5).accuracy).toBeGreaterThan(0.5);
    expect(result.topExpertByClass).toHaveLength(10);
    expect(lines.at(-1)).toMatch(/^all 8 experts +\d/);
  });
});
