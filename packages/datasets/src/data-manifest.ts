/** The SHA-256 checksums a shipped data file must match. */
export interface DataFileChecksums {
  /** Of the gzipped file as shipped (the line in `data/SHA256SUMS`). */
  gzipped: string;
  /**
   * Of the decompressed contents: what a browser receives when a server sends the `.gz` file
   * with `Content-Encoding: gzip` and `fetch` decompresses it on the way in.
   */
  contents: string;
}

/** Checksums of every bundled data file, by path relative to the package's `data/` folder. */
export const DATA_FILES = {
  'CollegeMsg.txt.gz': {
    gzipped: 'ae1d08dd631df64206fa9eb6e36cdb9e581852e1bc689b6c0d2fac7ec752b64a',
    contents: '61c48411d84b3907f0ccc7468d47241a5e2a46a7234739e4379274a190293fe6',
  },
  'austen.txt.gz': {
    gzipped: '3f5db09b4a9d93d86b93130579a20f6413d046f64ca68fe3cb331c818c28f48f',
    contents: 'ae4140c6e5ab543cc81f68358120258f0935ac9e27a30f44a7a564b349307867',
  },
  'digits.csv.gz': {
    gzipped: '46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a',
    contents: '6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8',
  },
  'movielens_dslabs.csv.gz': {
    gzipped: '6664ac75f9378f44a916bc1e3de046bcaa7302af70a2be1ca8165a40fdbffdf2',
    contents: '821795331fd974bbe7a8416f2a7eec2b548a485dedb47a073580b0a9a8a0a8d2',
  },
  'soc-sign-bitcoinotc.csv.gz': {
    gzipped: 'c7a8fe5e6048fdb4fa50eac126d55e1618d15bc74cd99b38965881cc6486c4f4',
    contents: '22b08170d37407697764acabc1b8b361ffad2d71c7c9dc002d3702548c0ca8e1',
  },
} as const satisfies Record<string, DataFileChecksums>;

/** Path of a bundled data file, relative to the package's `data/` folder. */
export type DataFileName = keyof typeof DATA_FILES;

/**
 * A package's `data/` folder as the loaders see it: the package that ships it (named in error
 * messages), the checksum of every file in it, and where it is in Node. `@dynn/datasets`
 * describes its own folder with one; a data package such as `@dynn/data-fashion-mnist` passes its
 * own to {@link readBundledFile} and so reads, checks and reports its files the same way.
 */
export interface DataBundle<File extends string = string> {
  /** The npm package that ships the files, e.g. `@dynn/datasets`: messages say to reinstall it. */
  packageName: string;
  /** The checksums of every file, by path relative to the `data/` folder. */
  files: Readonly<Record<File, DataFileChecksums>>;
  /**
   * Node: the package's own `data/` folder, read when the caller gives no location. Called on
   * first use; typically `new URL(folder, import.meta.url)` in the package's module.
   */
  dataFolder(): URL;
}

// Relative to this module: `src/` in the repository, `dist/` once built. Kept in a variable so
// that bundlers do not mistake it for an asset reference.
const PACKAGE_DATA_FOLDER = '../data/';

/** `@dynn/datasets`'s own data folder. */
export const DATASETS_BUNDLE: DataBundle<DataFileName> = {
  packageName: '@dynn/datasets',
  files: DATA_FILES,
  dataFolder: () => new URL(PACKAGE_DATA_FOLDER, import.meta.url),
};
