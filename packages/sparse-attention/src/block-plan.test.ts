import { describe, expect, it } from 'vitest';
import { type BlockPlan, MAX_GROUPS, planBlocks } from './block-plan.js';
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

/**
 * Checks a plan's groups: every query block of every row in exactly one, in ascending order, each
 * group's `kept` covering its query blocks' lists (slots past it are sentinels), its `masked`
 * flag true iff one of its slots needs a mask, and `computedTiles` their sum. Returns each
 * group's list lengths.
 */
function checkGroups(plan: BlockPlan): number[][] {
  const seen = new Uint8Array(plan.rows * plan.queryBlocks);
  let computed = 0;
  const lengths = plan.groups.map((group) => {
    expect(Array.from(group.units)).toEqual(Array.from(group.units).sort((a, b) => a - b));
    let masked = false;
    const own = Array.from(group.units, (unit) => {
      seen[unit]! += 1;
      const slots = plan.slots.subarray(unit * plan.kept, (unit + 1) * plan.kept);
      const masks = plan.slotMask.subarray(unit * plan.kept, (unit + 1) * plan.kept);
      const length = slots.indexOf(plan.keyBlocks);
      expect(slots.subarray(group.kept).every((block) => block === plan.keyBlocks)).toBe(true);
      masked ||= masks.subarray(0, group.kept).some((m) => m !== 0);
      return length < 0 ? plan.kept : length;
    });
    expect(Math.max(1, ...own)).toBe(group.kept);
    expect(group.masked).toBe(masked);
    computed += group.units.length * group.kept;
    return own;
  });
  expect(Array.from(seen).every((count) => count === 1)).toBe(true);
  expect(plan.computedTiles).toBe(computed);
  expect(plan.groups.length).toBeLessThanOrEqual(MAX_GROUPS);
  return lengths;
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

  it('groups query blocks by the length of their lists, so long lists pad only their own group', () => {
    // Causal, 64 query blocks keeping 1 to 64 key blocks: one group would compute all 64 x 64.
    const causal = planBlocks({ pattern: { type: 'causal' }, blockSize: 4, queries: 256, keys: 256 });
    expect(causal.keptTiles).toBe((64 * 65) / 2);
    checkGroups(causal);
    expect(causal.groups.length).toBeGreaterThan(1);
    expect(causal.computedTiles).toBeLessThanOrEqual(1.125 * causal.keptTiles);
    expect(causal.computedTiles).toBeLessThan(0.6 * causal.denseTiles);
    // A global block: its query block keeps all 32 key blocks, the others 3 to 4.
    const longformer = planBlocks({
      pattern: { type: 'longformer', windowBlocks: 3, globalBlocks: [0] },
      blockSize: 4,
      queries: 128,
      keys: 128,
    });
    const lengths = checkGroups(longformer);
    expect(longformer.groups.map((g) => g.kept)).toEqual([4, 32]);
    expect(lengths[1]).toEqual([32]);
    expect(longformer.computedTiles).toBe(31 * 4 + 32);
    // A window's lists differ only at the start: one group, in table order, the old padded plan.
    const window = planBlocks({
      pattern: { type: 'window', before: 8, after: 8 },
      blockSize: 4,
      queries: 128,
      keys: 128,
    });
    checkGroups(window);
    expect(window.groups.length).toBe(1);
    expect(window.computedTiles).toBe(window.queryBlocks * window.kept);
    // Per-row plans group the query blocks of every row together.
    const padding = Array.from({ length: 2 * 40 }, (_, i) => (i >= 30 && i < 40 ? 0 : 1));
    const padded = planBlocks({
      pattern: { type: 'causal' },
      blockSize: 4,
      queries: 40,
      keys: 40,
      rows: 2,
      padding,
    });
    checkGroups(padded);
    expect(padded.computedTiles).toBeLessThanOrEqual(1.125 * padded.keptTiles + padded.groups.length);
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
