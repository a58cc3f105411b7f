import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DATASETS, listDatasets } from './catalog.js';
import { DATA_FILES } from './data-manifest.js';

describe('listDatasets', () => {
  it('finds every bundled set present and intact in the package', async () => {
    const sets = await listDatasets();
    expect(sets.map((set) => set.name)).toEqual([
      'digits',
      'austen',
      'uci-messages',
      'bitcoin-otc',
      'movielens',
    ]);
    expect(sets.every((set) => set.present && set.valid)).toBe(true);
    expect(sets[0]!.fileStatus[0]!.location).toMatch(/datasets[/\\]data[/\\]digits\.csv\.gz$/);
  });

  it('covers every bundled file exactly once', () => {
    expect(DATASETS.flatMap((set) => set.files).sort()).toEqual(Object.keys(DATA_FILES).sort());
  });

  it('reports missing and corrupt files in another folder', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'dynn-datasets-'));
    try {
      await writeFile(join(dataDir, 'digits.csv.gz'), 'not the digits');
      const sets = await listDatasets({ dataDir });
      const digits = sets.find((set) => set.name === 'digits')!;
      expect(digits.fileStatus).toEqual([
        { file: 'digits.csv.gz', location: join(dataDir, 'digits.csv.gz'), present: true, valid: false },
      ]);
      expect([digits.present, digits.valid]).toEqual([true, false]);
      const others = sets.filter((set) => set.name !== 'digits');
      expect(others.every((set) => !set.present && !set.valid)).toBe(true);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
