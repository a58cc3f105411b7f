import { DynnError, isDynnError } from '@dynn/core';
import type { DataLocation } from './byte-source.js';
import { DATASETS_BUNDLE, type DataFileName } from './data-manifest.js';
import { readVerifiedBytes, resolveByteSource } from './read-data-file.js';

/** Name of a data set bundled with `@dynn/datasets`. */
export type DatasetName = 'digits' | 'austen' | 'uci-messages' | 'bitcoin-otc' | 'movielens';

/** A bundled data set: its name, what it is and the files it is read from. */
export interface DatasetInfo {
  /** Short name. */
  name: DatasetName;
  /** One line on what the set is. */
  title: string;
  /** The set's files, relative to the data folder. */
  files: readonly DataFileName[];
}

/** Whether one data file is where the loaders look, and intact. */
export interface DataFileStatus {
  /** The file, relative to the data folder. */
  file: DataFileName;
  /** The path or URL it was looked for at. */
  location: string;
  /** True when the file exists there. */
  present: boolean;
  /** True when it exists and its SHA-256 matches. */
  valid: boolean;
}

/** A bundled data set and the state of its files. */
export interface DatasetStatus extends DatasetInfo {
  /** The state of each of `files`. */
  fileStatus: DataFileStatus[];
  /** True when every file is present. */
  present: boolean;
  /** True when every file is present and intact, so the set's loader will succeed. */
  valid: boolean;
}

/** The data sets bundled with the package, in the order {@link listDatasets} reports them. */
export const DATASETS: readonly DatasetInfo[] = [
  { name: 'digits', title: 'UCI optical digits: 1,797 8x8 handwritten digits', files: ['digits.csv.gz'] },
  {
    name: 'austen',
    title: "Jane Austen's six novels: 4,025,032 characters, 81 symbols",
    files: ['austen.txt.gz'],
  },
  {
    name: 'uci-messages',
    title: 'UC Irvine messages: temporal graph, 1,899 nodes, 59,835 edges',
    files: ['CollegeMsg.txt.gz'],
  },
  {
    name: 'bitcoin-otc',
    title: 'Bitcoin-OTC trust ratings: temporal graph, 5,881 nodes, 35,592 edges',
    files: ['soc-sign-bitcoinotc.csv.gz'],
  },
  {
    name: 'movielens',
    title: 'MovieLens small: 100,004 ratings, 671 users, 9,066 movies',
    files: ['movielens_dslabs.csv.gz'],
  },
];

/** A data set too large for `@dynn/datasets`, shipped in an optional package of its own. */
export interface SeparateDataset {
  /** Short name, as in {@link DatasetInfo.name}. */
  name: string;
  /** One line on what the set is. */
  title: string;
  /** The npm package that ships the set and its loader. */
  packageName: string;
  /** The loader the package exports. */
  loader: string;
}

/**
 * The data sets that ship in packages of their own, so that installing `@dynn/datasets` stays
 * small: install one (`npm install @dynn/data-fashion-mnist`) and import its loader from it.
 */
export const SEPARATE_DATASETS: readonly SeparateDataset[] = [
  {
    name: 'fashion-mnist',
    title: 'Fashion-MNIST: 60,000 + 10,000 grey 28x28 clothing images, 10 classes (30 MB)',
    packageName: '@dynn/data-fashion-mnist',
    loader: 'loadFashionMnist',
  },
];

/**
 * The `DATA_MISSING` {@link DynnError} for a data set that ships in a package of its own (see
 * {@link SEPARATE_DATASETS}) when that package is not installed: its message gives the
 * `npm install` command and the loader to import. Throws an `INVALID_OPTION` `DynnError` when
 * `name` is no such set.
 *
 * @example
 * ```ts
 * const fashion = await import('@dynn/data-fashion-mnist').catch(() => {
 *   throw dataPackageMissing('fashion-mnist'); // "... `npm install @dynn/data-fashion-mnist` ..."
 * });
 * ```
 */
export function dataPackageMissing(name: string): DynnError {
  const set = SEPARATE_DATASETS.find((candidate) => candidate.name === name);
  if (set === undefined) {
    const known = SEPARATE_DATASETS.map((candidate) => candidate.name).join(', ');
    throw new DynnError(
      'INVALID_OPTION',
      `No data set '${name}' ships in a package of its own (${known} do).`,
    );
  }
  return new DynnError(
    'DATA_MISSING',
    `Data set '${set.name}' is not installed: it ships in its own package, ${set.packageName}, to keep ` +
      `@dynn/datasets small. Install it with \`npm install ${set.packageName}\` and import ` +
      `${set.loader} from '${set.packageName}'.`,
  );
}

/**
 * The data set called `name`, without reading anything. Throws a `DATA_MISSING`
 * {@link DynnError} with the `npm install` command for a set that ships in a package of its own
 * (`fashion-mnist`: `@dynn/data-fashion-mnist`), and an `INVALID_OPTION` one listing the bundled
 * sets for any other unknown name.
 *
 * @example
 * ```ts
 * getDataset('digits').files; // ['digits.csv.gz']
 * getDataset('fashion-mnist'); // throws: npm install @dynn/data-fashion-mnist
 * ```
 */
export function getDataset(name: string): DatasetInfo {
  const set = DATASETS.find((candidate) => candidate.name === name);
  if (set !== undefined) return set;
  if (SEPARATE_DATASETS.some((candidate) => candidate.name === name)) throw dataPackageMissing(name);
  const known = DATASETS.map((candidate) => candidate.name).join(', ');
  throw new DynnError('INVALID_OPTION', `No data set '${name}' in @dynn/datasets; it has ${known}.`);
}

async function fileStatus(file: DataFileName, location: DataLocation): Promise<DataFileStatus> {
  const source = await resolveByteSource(location, file, DATASETS_BUNDLE);
  const status = { file, location: source.locate(file) };
  try {
    await readVerifiedBytes(file, source, DATASETS_BUNDLE);
    return { ...status, present: true, valid: true };
  } catch (error) {
    if (isDynnError(error, 'DATA_MISSING')) return { ...status, present: false, valid: false };
    if (isDynnError(error, 'DATA_CORRUPT')) return { ...status, present: true, valid: false };
    throw error;
  }
}

/**
 * Every bundled data set with whether its files are present and intact at `location` (by
 * default, in Node, the package's own `data/` folder). Reads and hashes every file, about 3 MB.
 * In a browser it needs `baseUrl` (or `source`), else it throws a `DATA_MISSING` `DynnError`.
 *
 * @example
 * ```ts
 * for (const set of await listDatasets()) console.log(set.name, set.valid ? 'ok' : 'unavailable');
 * ```
 */
export async function listDatasets(location: DataLocation = {}): Promise<DatasetStatus[]> {
  return Promise.all(
    DATASETS.map(async (dataset) => {
      const files = await Promise.all(dataset.files.map((file) => fileStatus(file, location)));
      return {
        ...dataset,
        fileStatus: files,
        present: files.every((file) => file.present),
        valid: files.every((file) => file.valid),
      };
    }),
  );
}
