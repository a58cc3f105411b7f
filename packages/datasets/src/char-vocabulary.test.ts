import { isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { CharVocabulary } from './char-vocabulary.js';

describe('CharVocabulary', () => {
  const vocabulary = CharVocabulary.fromText('banana £5');

  it('holds the distinct characters in code unit order', () => {
    expect(vocabulary.symbols).toEqual([' ', '5', 'a', 'b', 'n', '£']);
  });

  it('encodes to byte ids and decodes back', () => {
    const ids = vocabulary.encode('nab £');
    expect(ids).toBeInstanceOf(Uint8Array);
    expect(Array.from(ids)).toEqual([4, 2, 3, 0, 5]);
    expect(vocabulary.decode(ids)).toBe('nab £');
  });

  it('uses 16-bit ids for more than 256 symbols', () => {
    const text = Array.from({ length: 300 }, (_, i) => String.fromCharCode(0x100 + i)).join('');
    const wide = CharVocabulary.fromText(text);
    const ids = wide.encode(text);
    expect(ids).toBeInstanceOf(Uint16Array);
    expect(wide.decode(ids)).toBe(text);
  });

  it('decodes long id runs', () => {
    const text = 'ab n'.repeat(10_000);
    expect(vocabulary.decode(vocabulary.encode(text))).toBe(text);
  });

  it('names an unknown character or id in an INVALID_INPUT error', () => {
    expect(() => vocabulary.encode('bank')).toThrow(/Character "k" at index 3 is not in the vocabulary/);
    let caught: unknown;
    try {
      vocabulary.decode([0, 6]);
    } catch (error) {
      caught = error;
    }
    expect(isDynnError(caught, 'INVALID_INPUT')).toBe(true);
    expect((caught as Error).message).toMatch(/Id 6 at index 1 is not in the vocabulary/);
  });
});
