import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynnError, isDynnError } from '@dynn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from './checksum.js';
import { DATA_FILES } from './data-manifest.js';
import { loadDigits } from './digits.js';
import { gunzip } from './gunzip.js';

const packageData = fileURLToPath(new URL('../data/', import.meta.url));

async function failure(promise: Promise<unknown>): Promise<DynnError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DynnError) return error;
    throw error;
  }
  throw new Error('expected the promise to reject');
}

describe('bundled data files', () => {
  it('are listed in data/SHA256SUMS with the checksums the loaders expect', async () => {
    const listed = (await readFile(join(packageData, 'SHA256SUMS'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+/))
      .map(([checksum, file]) => [file, checksum]);
    const expected = Object.entries(DATA_FILES).map(([file, checksums]) => [file, checksums.gzipped]);
    expect(Object.fromEntries(listed)).toEqual(Object.fromEntries(expected));
  });

  it('decompress to contents with the checksums the loaders expect', async () => {
    for (const [file, checksums] of Object.entries(DATA_FILES)) {
      const contents = await gunzip(new Uint8Array(await readFile(join(packageData, file))));
      expect([file, await sha256Hex(contents)]).toEqual([file, checksums.contents]);
    }
  });
});

describe('loading from dataDir', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'dynn-datasets-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('reads a good copy of the file', async () => {
    const goodDir = join(dataDir, 'good');
    await mkdir(goodDir);
    await copyFile(join(packageData, 'digits.csv.gz'), join(goodDir, 'digits.csv.gz'));
    expect((await loadDigits({ dataDir: goodDir })).count).toBe(1_797);
  });

  it('fails on a missing file with DATA_MISSING naming the file and where it looked', async () => {
    const error = await failure(loadDigits({ dataDir }));
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect(error.message).toContain(
      `Data file 'digits.csv.gz' is missing: nothing at ${join(dataDir, 'digits.csv.gz')}`,
    );
    expect(error.message).toContain('Reinstall @dynn/datasets');
    expect(error.context.file).toBe(join(dataDir, 'digits.csv.gz'));
  });

  it('fails on a tampered file with DATA_CORRUPT giving its checksum and the expected one', async () => {
    const corruptDir = join(dataDir, 'corrupt');
    await mkdir(corruptDir);
    const bytes = await readFile(join(packageData, 'digits.csv.gz'));
    bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(join(corruptDir, 'digits.csv.gz'), bytes);
    const error = await failure(loadDigits({ dataDir: corruptDir }));
    expect(isDynnError(error, 'DATA_CORRUPT')).toBe(true);
    expect(error.message).toMatch(
      new RegExp(
        `Data file 'digits\\.csv\\.gz' at .*corrupt.*digits\\.csv\\.gz is corrupt: its SHA-256 is [0-9a-f]{64}, ` +
          `expected ${DATA_FILES['digits.csv.gz'].gzipped}\\. Reinstall @dynn/datasets`,
      ),
    );
    expect(error.context.file).toBe(join(corruptDir, 'digits.csv.gz'));
  });
});
