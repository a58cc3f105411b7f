import { isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import {
  type Pattern,
  pairKept,
  patternLookAhead,
  patternLookBack,
  patternNeeds,
  patternScope,
  patternUpperBound,
  randomKeyBlocks,
  tileKept,
  validatePattern,
} from './pattern.js';
import { referenceKeep } from './test-models.js';

const N = 19;
const B = 4;
const documents = Int32Array.from({ length: N }, (_, i) => (i < 6 ? 4 : i < 11 ? 1 : 4));

const PATTERNS: Pattern[] = [
  { type: 'full' },
  { type: 'causal' },
  { type: 'window', before: 3, after: 1 },
  { type: 'dilated', before: 7, after: 5, dilation: 3 },
  { type: 'global', tokens: [1, 2, 3, 4, 9] },
  { type: 'random', blocks: 2, seed: 1 },
  { type: 'fixed', localBlocks: 2, globalBlocks: 1 },
  { type: 'bigbird', windowBlocks: 3, globalBlocks: 1, randomBlocks: 1, seed: 2 },
  { type: 'longformer', windowBlocks: 1, globalBlocks: [0, 3] },
  { type: 'variable', localWindows: [2, 1], globalBlocks: [1] },
  { type: 'document' },
  { type: 'prefix-lm', prefix: 6 },
  { type: 'prefix-lm' },
  { type: 'and', of: [{ type: 'causal' }, { type: 'document' }] },
  {
    type: 'or',
    of: [
      { type: 'window', before: 0, after: 0 },
      { type: 'global', tokens: [0] },
    ],
  },
];

const scopeFor = () => patternScope({ blockSize: B, length: N, start: 0, documents, prefix: 8 });

/** Patterns whose tile answer is exact: `'some'` only when the tile holds a kept and a dropped pair. */
const exact = (p: Pattern) => p.type !== 'dilated' && p.type !== 'and' && p.type !== 'or';

describe('patterns', () => {
  for (const p of PATTERNS) {
    it(`${JSON.stringify(p)}: pairs match the definitions, tiles match their pairs`, () => {
      const keep = referenceKeep(p, N, B, { documents: Array.from(documents), prefix: 8 });
      const scope = scopeFor();
      for (let i = 0; i < N; i++) {
        for (let j = 0; j < N; j++)
          expect(pairKept(p, scope, i, j), `pair (${i}, ${j})`).toBe(keep[i * N + j] === 1);
      }
      // Ranges of every alignment, not only blocks: a session's query blocks start anywhere.
      for (const [qLo, qHi, kLo, kHi] of [
        [0, 4, 0, 4],
        [4, 8, 0, 4],
        [3, 9, 2, 7],
        [8, 12, 8, 12],
        [12, 19, 0, 19],
        [5, 6, 0, 19],
        [10, 11, 9, 10],
        [0, 19, 17, 19],
      ] as const) {
        let kept = 0;
        for (let i = qLo; i < qHi; i++) for (let j = kLo; j < kHi; j++) kept += keep[i * N + j]!;
        const pairs = (qHi - qLo) * (kHi - kLo);
        const tile = tileKept(p, scope, qLo, qHi, kLo, kHi);
        const where = `tile [${qLo}, ${qHi}) x [${kLo}, ${kHi})`;
        if (tile === 'all') expect(kept, where).toBe(pairs);
        if (tile === 'none') expect(kept, where).toBe(0);
        if (exact(p)) expect(tile, where).toBe(kept === 0 ? 'none' : kept === pairs ? 'all' : 'some');
      }
    });
  }

  it('draws distinct random key blocks, the same for the same seed and length', () => {
    const a = randomKeyBlocks(5, 3, 2, 10);
    expect(a.size).toBe(3);
    expect([...a].every((b) => b >= 0 && b < 10)).toBe(true);
    expect(randomKeyBlocks(5, 3, 2, 10)).toEqual(a);
    expect(randomKeyBlocks(5, 20, 2, 4)).toEqual(new Set([0, 1, 2, 3]));
    // Different query blocks draw differently (with overwhelming probability over 10 blocks).
    const draws = new Set(Array.from({ length: 8 }, (_, q) => [...randomKeyBlocks(5, 3, q, 10)].join()));
    expect(draws.size).toBeGreaterThan(1);
  });

  it('says what a pattern reads and how far it reaches', () => {
    const window: Pattern = { type: 'window', before: 6, after: 0 };
    const doc: Pattern = { type: 'and', of: [{ type: 'causal' }, { type: 'document' }] };
    expect(patternNeeds(doc)).toEqual({ documents: true, prefix: false });
    expect(patternNeeds({ type: 'prefix-lm' })).toEqual({ documents: false, prefix: true });
    expect(patternNeeds({ type: 'prefix-lm', prefix: 3 })).toEqual({ documents: false, prefix: false });
    expect(patternUpperBound(doc)).toEqual({ type: 'and', of: [{ type: 'causal' }, { type: 'full' }] });
    expect(patternLookBack(window)).toBe(6);
    expect(patternLookBack({ type: 'and', of: [{ type: 'causal' }, window] })).toBe(6);
    expect(patternLookBack({ type: 'or', of: [window, { type: 'global', tokens: [0] }] })).toBe(Infinity);
    expect(patternLookAhead(window)).toBe('none');
    expect(patternLookAhead(doc)).toBe('none');
    expect(patternLookAhead({ type: 'window', before: 1, after: 1 })).toBe('any');
    expect(patternLookAhead({ type: 'or', of: [{ type: 'prefix-lm' }, window] })).toBe('prefix');
    expect(
      patternLookAhead({ type: 'bigbird', windowBlocks: 3, globalBlocks: 1, randomBlocks: 1, seed: 0 }),
    ).toBe('any');
  });

  it('refuses bad patterns with a typed error naming the field and the fix', () => {
    const refuse = (value: unknown, message: RegExp) => {
      let error: unknown;
      try {
        validatePattern(value);
      } catch (e) {
        error = e;
      }
      expect(isDynnError(error, 'INVALID_ATTR')).toBe(true);
      expect((error as Error).message).toMatch(message);
    };
    refuse('causal', /pattern must be an object such as \{"type": "causal"\}/);
    refuse({ type: 'windw' }, /pattern\.type is "windw"; expected one of 'full', 'causal', 'window'/);
    refuse(
      { type: 'window', before: 2 },
      /pattern\.after is missing: a 'window' pattern .* needs before, after/,
    );
    refuse({ type: 'window', before: -1, after: 0 }, /pattern\.before must be an integer >= 0, got -1/);
    refuse({ type: 'causal', before: 1 }, /pattern\.before is not a field of a 'causal' pattern/);
    refuse(
      { type: 'and', of: [{ type: 'causal' }, { type: 'dilated', before: 4, after: 0, dilation: 0 }] },
      /pattern\.of\[1\]\.dilation must be an integer >= 1, got 0/,
    );
    refuse({ type: 'or', of: [] }, /pattern\.of must be a non-empty array of patterns/);
    refuse({ type: 'global', tokens: [0, 1.5] }, /pattern\.tokens\[1\] must be an integer >= 0/);
    refuse(
      { type: 'fixed', localBlocks: 2, globalBlocks: 3 },
      /globalBlocks \(3\) must not exceed localBlocks \(2\)/,
    );
    refuse(
      { type: 'variable', localWindows: [], globalBlocks: [] },
      /pattern\.localWindows must list at least one/,
    );
    expect(validatePattern({ type: 'prefix-lm' })).toEqual({ type: 'prefix-lm' });
  });
});
