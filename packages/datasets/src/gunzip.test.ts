import { describe, expect, it } from 'vitest';
import { gunzip } from './gunzip.js';

// gzip of "hello, dynn\n" (Python's gzip.compress with mtime=0).
const GZIPPED = new Uint8Array([
  31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 203, 72, 205, 201, 201, 215, 81, 72, 169, 204, 203, 227, 2, 0, 226, 227,
  153, 32, 12, 0, 0, 0,
]);

describe('gunzip', () => {
  it('restores the original bytes into a buffer of their own', async () => {
    const bytes = await gunzip(GZIPPED);
    expect(new TextDecoder().decode(bytes)).toBe('hello, dynn\n');
    expect(bytes.byteOffset).toBe(0);
    expect(bytes.buffer.byteLength).toBe(bytes.byteLength);
  });

  it('rejects bytes that are not gzip', async () => {
    await expect(gunzip(new Uint8Array([1, 2, 3, 4]))).rejects.toThrow();
  });
});
