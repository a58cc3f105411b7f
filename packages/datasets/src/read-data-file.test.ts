import { DynnError, isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import type { ByteSource } from './byte-source.js';
import { readDataFile } from './read-data-file.js';

function memorySource(read: ByteSource['read']): ByteSource {
  return { locate: (file) => `memory://${file}`, read };
}

async function failure(promise: Promise<unknown>): Promise<DynnError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DynnError) return error;
    throw error;
  }
  throw new Error('expected the promise to reject');
}

describe('readDataFile', () => {
  it('reports a file the source does not have as DATA_MISSING, naming it', async () => {
    const error = await failure(
      readDataFile('digits.csv.gz', { source: memorySource(async () => undefined) }),
    );
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect(error.message).toContain(
      "Data file 'digits.csv.gz' is missing: nothing at memory://digits.csv.gz",
    );
    expect(error.message).toContain('Reinstall @dynn/datasets');
    expect(error.context.file).toBe('memory://digits.csv.gz');
  });

  it('reports a source that fails as DATA_MISSING, with the reason', async () => {
    const source = memorySource(async () => {
      throw new Error('HTTP 500 Internal Server Error');
    });
    const error = await failure(readDataFile('austen.txt.gz', { source }));
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect(error.message).toContain(
      "'austen.txt.gz' could not be read from memory://austen.txt.gz: HTTP 500",
    );
  });

  it('reports gzip bytes with the wrong checksum as DATA_CORRUPT, giving both checksums', async () => {
    const source = memorySource(async () => new Uint8Array([0x1f, 0x8b, 8, 0]));
    const error = await failure(readDataFile('digits.csv.gz', { source }));
    expect(isDynnError(error, 'DATA_CORRUPT')).toBe(true);
    expect(error.message).toContain(
      "'digits.csv.gz' at memory://digits.csv.gz is corrupt: its SHA-256 is " +
        'fd72d30440b0bae1b1c6db6c8ad807f238ef3ca613aa7e8d5329e1e8ddf7da72, expected ' +
        '46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a',
    );
  });

  it('checks bytes that are not gzip (decompressed by fetch) against the contents checksum', async () => {
    const source = memorySource(async () => new TextEncoder().encode('abc'));
    const error = await failure(readDataFile('digits.csv.gz', { source }));
    expect(isDynnError(error, 'DATA_CORRUPT')).toBe(true);
    expect(error.message).toContain(
      'the SHA-256 of its (already decompressed) contents is ' +
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad, expected ' +
        '6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8',
    );
  });
});
