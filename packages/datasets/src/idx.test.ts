import { isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { parseIdx } from './idx.js';

function idxBytes(shape: number[], values: number[], typeCode = 0x08): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(4 + 4 * shape.length + values.length);
  const view = new DataView(bytes.buffer);
  bytes[2] = typeCode;
  bytes[3] = shape.length;
  shape.forEach((dimension, axis) => {
    view.setUint32(4 + 4 * axis, dimension, false);
  });
  bytes.set(values, 4 + 4 * shape.length);
  return bytes;
}

describe('parseIdx', () => {
  it('reads the big-endian shape and returns the data as a view, not a copy', () => {
    const bytes = idxBytes([2, 1, 3], [1, 2, 3, 4, 5, 6]);
    const { shape, data } = parseIdx(bytes, 'x.idx');
    expect(shape).toEqual([2, 1, 3]);
    expect(Array.from(data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(data.buffer).toBe(bytes.buffer);
  });

  it.each([
    ['a bad magic number', Object.assign(idxBytes([1], [7]), { 0: 1 }), /bad magic number/],
    ['a non-byte element type', idxBytes([1], [7], 0x0d), /not unsigned byte/],
    [
      'a size that does not match the header',
      idxBytes([3], [7, 8]),
      /promises 3 values but the file holds 2/,
    ],
  ])('rejects %s with a DATA_CORRUPT error naming the file', (_, bytes, reason) => {
    let caught: unknown;
    try {
      parseIdx(bytes, 'x.idx');
    } catch (error) {
      caught = error;
    }
    expect(isDynnError(caught, 'DATA_CORRUPT')).toBe(true);
    expect((caught as Error).message).toMatch(/'x\.idx' is not a valid IDX file/);
    expect((caught as Error).message).toMatch(reason);
  });
});

describe('parseIdx messages', () => {
  it('say to reinstall the package that ships the file', () => {
    const bytes = idxBytes([3], [7, 8]);
    expect(() => parseIdx(bytes, 'x.idx')).toThrow(/Reinstall @dynn\/datasets/);
    expect(() => parseIdx(bytes, 'x.idx', '@dynn/data-fashion-mnist')).toThrow(
      /Reinstall @dynn\/data-fashion-mnist to restore the original file/,
    );
  });
});
