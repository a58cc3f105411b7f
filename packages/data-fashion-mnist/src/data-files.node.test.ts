import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynnError, isDynnError } from '@dynn/core';
import { readBundledFile } from '@dynn/datasets';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FASHION_MNIST_BUNDLE } from './data-files.js';
import { loadFashionMnist } from './fashion-mnist.js';

const packageData = fileURLToPath(new URL('../data/', import.meta.url));
const sha256 = async (bytes: Uint8Array) =>
  Buffer.from(await crypto.subtle.digest('SHA-256', new Uint8Array(bytes))).toString('hex');

async function failure(promise: Promise<unknown>): Promise<DynnError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DynnError) return error;
    throw error;
  }
  throw new Error('expected the promise to reject');
}

describe('the shipped data files', () => {
  it('are listed in data/SHA256SUMS with the checksums the loader expects', async () => {
    const listed = (await readFile(join(packageData, 'SHA256SUMS'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+/))
      .map(([checksum, file]) => [file, checksum]);
    const expected = Object.entries(FASHION_MNIST_BUNDLE.files).map(([file, sums]) => [file, sums.gzipped]);
    expect(Object.fromEntries(listed)).toEqual(Object.fromEntries(expected));
  });

  it('match their checksums as shipped', async () => {
    for (const [file, sums] of Object.entries(FASHION_MNIST_BUNDLE.files)) {
      expect([file, await sha256(await readFile(join(packageData, file)))]).toEqual([file, sums.gzipped]);
    }
  });

  it('decompress to contents with the checksums the loader expects (Content-Encoding: gzip)', async () => {
    const file = 't10k-labels-idx1-ubyte.gz';
    const contents = await readBundledFile(FASHION_MNIST_BUNDLE, file);
    expect(await sha256(contents)).toBe(FASHION_MNIST_BUNDLE.files[file].contents);
    // Served already decompressed, the contents are checked against their own checksum.
    const source = { locate: (name: string) => `memory://${name}`, read: async () => contents };
    expect(await readBundledFile(FASHION_MNIST_BUNDLE, file, { source })).toEqual(contents);
  });
});

describe('reading from dataDir', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'dynn-fashion-mnist-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('fails on a missing file with DATA_MISSING naming the file and this package', async () => {
    const error = await failure(loadFashionMnist({ dataDir }));
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect(error.message).toMatch(/Data file '(train|t10k)-(images-idx3|labels-idx1)-ubyte\.gz' is missing/);
    expect(error.message).toContain(`nothing at ${dataDir}`);
    expect(error.message).toContain('Reinstall @dynn/data-fashion-mnist');
  });

  it('fails on a tampered file with DATA_CORRUPT naming this package', async () => {
    const corruptDir = join(dataDir, 'corrupt');
    await mkdir(corruptDir);
    const file = 't10k-labels-idx1-ubyte.gz';
    const bytes = await readFile(join(packageData, file));
    bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(join(corruptDir, file), bytes);
    const error = await failure(readBundledFile(FASHION_MNIST_BUNDLE, file, { dataDir: corruptDir }));
    expect(isDynnError(error, 'DATA_CORRUPT')).toBe(true);
    expect(error.message).toMatch(
      /Data file 't10k-labels-idx1-ubyte\.gz' at .*corrupt.* is corrupt: its SHA-256 is [0-9a-f]{64}/,
    );
    expect(error.message).toContain('Reinstall @dynn/data-fashion-mnist');
  });
});
