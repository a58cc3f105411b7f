import { describe, expect, it } from 'vitest';
import { contiguousIds } from './contiguous-ids.js';

describe('contiguousIds', () => {
  it('numbers the ids of all columns together, in ascending order of the original id', () => {
    const { ids, indices } = contiguousIds([40, 7, 7], new Float64Array([1000, 40]));
    expect(Array.from(ids)).toEqual([7, 40, 1000]);
    expect(indices.map((column) => Array.from(column))).toEqual([
      [1, 0, 0],
      [2, 1],
    ]);
  });
});
