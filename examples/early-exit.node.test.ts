import { useBackend } from '@dynn/core';
import { guardLeaks } from '@dynn/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { main as digitsExits } from './early-exit/digits-exits.js';

// The early-exit example reads the UCI digits from the file system, so it runs in Node only, on
// the backends Node has.
describe.each(['wasm', 'cpu'] as const)('early-exit example on %s', (backend) => {
  // The backend first, so the leak guard counts its tensors.
  beforeAll(() => useBackend(backend));
  guardLeaks();
  it('early-exit/digits-exits saves FLOPs at the calibrated threshold', async () => {
    const lines: string[] = [];
    const result = await digitsExits(backend, (line) => lines.push(line));
    expect(lines[0]).toMatch(/^exits: exit/);
    expect(result.fullAccuracy).toBeGreaterThan(0.9);
    expect(result.fullAccuracy - result.dynamicAccuracy).toBeLessThanOrEqual(0.03);
    expect(result.dynamicFlops).toBeLessThan(result.fullFlops);
    expect(result.exitHistogram.reduce((a, b) => a + b, 0)).toBe(359);
  });
});
