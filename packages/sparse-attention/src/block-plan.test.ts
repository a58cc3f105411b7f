import { describe, expect, it } from 'vitest';
import { type BlockPlan, planBlocks } from './block-plan.js';
import type { Pattern } from './pattern.js';
import { MASKED_SCORE } from './routing-attention.js';
import { referenceKeep } from './test-models.js';

/**
 * The keep matrix a plan stands for (`[queries, keys]` of row `r`): pairs of kept slots whose
 * mask entry is 0, for the queries that are alive.
 */
function planKeep(plan: BlockPlan, r = 0): Uint8Array {
  const { queries, keys, queryBlockSize: qb, blockSize: b, kept, queryBlocks } = plan;
  const out = new Uint8Array(queries * keys);
  for (let q = 0; q < queryBlocks; q++) {
    for (let s = 0; s < kept; s++) {
      const at = (r * queryBlocks + q) * kept + s;
      const block = plan.slots[at]!;
      const tile = plan.slotMask[at]!;
      for (let i = 0; i < qb && q * qb + i < queries; i++) {
        if (plan.alive && plan.alive[r * queries + q * qb + i] === 0) continue;
        for (let j = 0; j < b && block * b + j < keys; j++) {
          if (block < plan.keyBlocks && plan.maskTiles[tile * qb * b + i * b + j] === 0) {
            out[(q * qb + i) * keys + block * b + j] = 1;
          }
        }
      }
    }
  }
  return out;
}

describe('block plans', () => {
  it('keeps exactly the pairs of the pattern, padding the lists with masked sentinels', () => {
    const pattern: Pattern = {
      type: 'and',
      of: [{ type: 'causal' }, { type: 'window', before: 5, after: 0 }],
    };
    const plan = planBlocks({ pattern, blockSize: 4, queries: 14, keys: 14 });
    expect(plan.rows).toBe(1);
    expect([plan.queryBlocks, plan.keyBlocks, plan.kept]).toEqual([4, 4, 3]);
    expect(planKeep(plan)).toEqual(referenceKeep(pattern, 14, 4));
    // Query block 0 keeps one key block; the other two slots are the sentinel, fully masked.
    expect(Array.from(plan.slots.subarray(0, 3))).toEqual([0, 4, 4]);
    expect(Array.from(plan.slotMask.subarray(1, 3))).toEqual([1, 1]);
    expect(plan.maskTiles.subarray(16, 32).every((v) => v === MASKED_SCORE)).toBe(true);
    expect(plan.maskTiles.subarray(0, 16).every((v) => v === 0)).toBe(true);
    expect(plan.alive).toBeUndefined();
  });

  it('keeps only the tiles a window reaches: far fewer than dense, partial ones deduplicated', () => {
    const pattern: Pattern = { type: 'window', before: 8, after: 8 };
    const plan = planBlocks({ pattern, blockSize: 8, queries: 64, keys: 64 });
    expect(plan.denseTiles).toBe(64);
    expect(plan.keptTiles).toBe(8 * 3 - 2); // the diagonal and its two neighbours
    expect(plan.kept).toBe(3);
    expect(plan.partialTiles).toBe(14); // the neighbours keep a triangle each
    expect(plan.maskTiles.length / 64).toBe(4); // kept, dropped, and the two triangles
    expect(planKeep(plan)).toEqual(referenceKeep(pattern, 64, 8));
  });

  it('caches a static plan per sequence and replans data-dependent ones per call', () => {
    const pattern: Pattern = { type: 'causal' };
    const a = planBlocks({ pattern, blockSize: 4, queries: 9, keys: 9 });
    expect(planBlocks({ pattern, blockSize: 4, queries: 9, keys: 9 })).toBe(a);
    expect(planBlocks({ pattern, blockSize: 4, queries: 10, keys: 10 })).not.toBe(a);
    const padding = [1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    const padded = planBlocks({ pattern, blockSize: 4, queries: 9, keys: 9, rows: 2, padding });
    expect(padded.rows).toBe(2);
    expect(planBlocks({ pattern, blockSize: 4, queries: 9, keys: 9, rows: 2, padding })).not.toBe(padded);
    // Padded queries keep no key; row 0's last key blocks hold only padding and are dropped.
    expect(Array.from(padded.alive!.subarray(0, 9))).toEqual([1, 1, 1, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(padded.alive!.subarray(9))).toEqual(new Array(9).fill(1));
    for (const r of [0, 1]) {
      expect(planKeep(padded, r)).toEqual(
        referenceKeep(pattern, 9, 4, { padding: padding.slice(r * 9, r * 9 + 9) }),
      );
    }
    expect(
      Array.from(padded.slots.subarray(0, padded.queryBlocks * padded.kept)).filter((s) => s === 1),
    ).toEqual([]);
  });

  it('plans per row from document ids and prefix lengths', () => {
    const pattern: Pattern = { type: 'or', of: [{ type: 'document' }, { type: 'prefix-lm' }] };
    const documents = Int32Array.from([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    const plan = planBlocks({
      pattern,
      blockSize: 3,
      queries: 10,
      keys: 10,
      rows: 2,
      documents,
      prefix: [2, 7],
    });
    for (const r of [0, 1]) {
      const row = { documents: Array.from(documents.subarray(r * 10, r * 10 + 10)), prefix: [2, 7][r]! };
      expect(planKeep(plan, r)).toEqual(referenceKeep(pattern, 10, 3, row));
    }
  });

  it('drops tiles whose pairs the pattern drops after all, and pads a short last block', () => {
    // Every 4th position back: the tiles between them hold no kept pair, though the window reaches them.
    const pattern: Pattern = { type: 'dilated', before: 12, after: 0, dilation: 4 };
    const plan = planBlocks({ pattern, blockSize: 2, queries: 13, keys: 13 });
    expect(planKeep(plan)).toEqual(referenceKeep(pattern, 13, 2));
    expect(plan.keptTiles).toBeLessThan(
      planBlocks({ pattern: { type: 'window', before: 12, after: 0 }, blockSize: 2, queries: 13, keys: 13 })
        .keptTiles,
    );
    expect(plan.keyBlocks).toBe(7);
  });

  it('plans the new queries of a session at their absolute positions, one small query block', () => {
    const pattern: Pattern = {
      type: 'and',
      of: [{ type: 'causal' }, { type: 'window', before: 5, after: 0 }],
    };
    // Ten positions seen, the cache holds the last five; one new query at position 10.
    const plan = planBlocks({ pattern, blockSize: 4, queries: 1, keys: 6, keyStart: 5 });
    expect(plan.queryBlockSize).toBe(1);
    expect([plan.queryBlocks, plan.keyBlocks]).toEqual([1, 2]);
    expect(Array.from(planKeep(plan))).toEqual([1, 1, 1, 1, 1, 1]);
    const wide = planBlocks({ pattern, blockSize: 4, queries: 2, keys: 7, keyStart: 5 });
    expect(Array.from(planKeep(wide))).toEqual([1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1]);
  });
});
