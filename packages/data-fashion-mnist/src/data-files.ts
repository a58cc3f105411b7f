import type { DataBundle, DataFileChecksums } from '@dynn/datasets';

/** Checksums of the four Fashion-MNIST files, by name in the package's `data/` folder. */
const FILES = {
  'train-images-idx3-ubyte.gz': {
    gzipped: 'b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7',
    contents: 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
  },
  'train-labels-idx1-ubyte.gz': {
    gzipped: '0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056',
    contents: 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
  },
  't10k-images-idx3-ubyte.gz': {
    gzipped: 'cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa',
    contents: '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
  },
  't10k-labels-idx1-ubyte.gz': {
    gzipped: '8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05',
    contents: '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
  },
} as const satisfies Record<string, DataFileChecksums>;

/** Name of one of the package's data files, relative to its `data/` folder. */
export type FashionMnistFile = keyof typeof FILES;

// Relative to this module: `src/` in the repository, `dist/` once built. Kept in a variable so
// that bundlers do not mistake it for an asset reference.
const PACKAGE_DATA_FOLDER = '../data/';

/** The package's `data/` folder, read through `@dynn/datasets`'s checked reading code. */
export const FASHION_MNIST_BUNDLE: DataBundle<FashionMnistFile> = {
  packageName: '@dynn/data-fashion-mnist',
  files: FILES,
  dataFolder: () => new URL(PACKAGE_DATA_FOLDER, import.meta.url),
};
