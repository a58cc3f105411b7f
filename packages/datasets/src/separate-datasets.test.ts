import { DynnError, isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { DATASETS, dataPackageMissing, getDataset, SEPARATE_DATASETS } from './catalog.js';
import { loadFashionMnist } from './fashion-mnist.js';

function thrown(run: () => unknown): DynnError {
  try {
    run();
  } catch (error) {
    if (error instanceof DynnError) return error;
    throw error;
  }
  throw new Error('expected a DynnError');
}

const INSTALL = '`npm install @dynn/data-fashion-mnist`';

describe('data sets shipped in packages of their own', () => {
  it('are Fashion-MNIST, kept out of the bundled catalog', () => {
    expect(SEPARATE_DATASETS.map((set) => [set.name, set.packageName])).toEqual([
      ['fashion-mnist', '@dynn/data-fashion-mnist'],
    ]);
    expect(DATASETS.map((set) => set.name)).not.toContain('fashion-mnist');
  });

  it('are refused by getDataset with DATA_MISSING giving the install command', () => {
    const error = thrown(() => getDataset('fashion-mnist'));
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect(error.message).toContain(INSTALL);
    expect(error.message).toContain("import loadFashionMnist from '@dynn/data-fashion-mnist'");
  });

  it('are refused by the stand-in loadFashionMnist with the same error', async () => {
    const error = await loadFashionMnist().catch((caught: unknown) => caught);
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect((error as Error).message).toBe(dataPackageMissing('fashion-mnist').message);
  });

  it('leave getDataset finding bundled sets and naming them for an unknown one', () => {
    expect(getDataset('digits').files).toEqual(['digits.csv.gz']);
    const error = thrown(() => getDataset('cifar-10'));
    expect(isDynnError(error, 'INVALID_OPTION')).toBe(true);
    expect(error.message).toBe(
      "No data set 'cifar-10' in @dynn/datasets; it has digits, austen, uci-messages, bitcoin-otc, movielens.",
    );
    expect(
      isDynnError(
        thrown(() => dataPackageMissing('digits')),
        'INVALID_OPTION',
      ),
    ).toBe(true);
  });
});
