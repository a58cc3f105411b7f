import { useBackend } from '@dynn/core';
import { guardLeaks } from '@dynn/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { main as austenSparse, REPORT_LENGTH } from './sparse-attention/austen-sparse.js';

// The sparse-attention example reads Austen from the file system, so it runs in Node only; on
// wasm, where it trains in seconds (the op itself runs on every backend in its package's tests).
describe('sparse-attention example on wasm', () => {
  // The backend first, so the leak guard counts its tensors.
  beforeAll(() => useBackend('wasm'));
  guardLeaks();

  it('sparse-attention/austen-sparse: trains window and routing heads, decodes in a session as by recomputing, computes a fraction of dense attention', async () => {
    const lines: string[] = [];
    const result = await austenSparse('wasm', (line) => lines.push(line));
    // A uniform guess over Austen's 81 symbols is log2(81) = 6.3 bits; 3.46 when this was written.
    expect(result.bitsPerChar).toBeLessThan(3.8);
    expect(lines[0]).toMatch(/^trained 150 steps on Austen: \d\.\d\d bits per character on held-out text$/);
    // The session (KV cache) generated what recomputing the prefix for every character generated.
    expect(result.same).toBe(true);
    expect(result.text.startsWith('It is a truth universally acknowledged, that a single man')).toBe(true);
    // 1,024 characters in blocks of 16: 64 x 64 tiles, of which the window of 32 keeps about 3 per row.
    expect(result.denseTiles).toBe((REPORT_LENGTH / 16) ** 2);
    expect(result.keptTiles).toBeLessThanOrEqual(3 * (REPORT_LENGTH / 16));
    // Every character routed once per routing head: 2 heads x 1,024 characters over the clusters.
    expect(result.clusterSizes).toHaveLength(2 * 4);
    expect(result.clusterSizes.reduce((a, b) => a + b, 0)).toBe(2 * REPORT_LENGTH);
    // Each routing query sees at most two windows of 16.
    expect(result.routingPairs).toBeLessThanOrEqual(2 * REPORT_LENGTH * 32);
    // The layer computed well under a quarter of dense causal attention's FLOPs, projections included.
    expect(result.attentionFlops).toBeLessThan(0.25 * result.denseFlops);
    expect(lines.at(-1)).toMatch(/^window heads: \d+ of 4096 tiles; routing heads: \d+ query-key pairs$/);
  }, 120_000);
});
