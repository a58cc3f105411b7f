/**
 * Where the loaders get a data file's bytes from: the `.gz` file as shipped, or its decompressed
 * contents (both are checked against their own SHA-256). The package ships a file
 * source for Node (the data package's own `data/` folder, or `dataDir`) and a fetch source for
 * browsers (`baseUrl`); pass your own as `source` to read from anywhere else, such as a cache.
 */
export interface ByteSource {
  /**
   * The path or URL `file` is read from, for error messages. `file` is relative to the data
   * folder, e.g. `digits.csv.gz`.
   */
  locate(file: string): string;
  /** The bytes of `file`, or `undefined` when it does not exist there; rejects on other failures. */
  read(file: string): Promise<Uint8Array<ArrayBuffer> | undefined>;
}

/**
 * Where a loader reads its files from. With none of these set, Node reads the `data/` folder of
 * the package that ships the set (`@dynn/datasets`, or a data package such as
 * `@dynn/data-fashion-mnist`); a browser needs `baseUrl` (or `source`).
 */
export interface DataLocation {
  /** Node: the folder holding the data files (same layout as the package's `data/` folder). */
  dataDir?: string;
  /**
   * Browser (or any runtime with `fetch`): the URL of a folder serving the data files as they
   * are, e.g. `'/node_modules/@dynn/datasets/data/'`. Relative URLs resolve against the page.
   */
  baseUrl?: string | URL;
  /** Any other byte source; takes precedence over `dataDir` and `baseUrl`. */
  source?: ByteSource;
}
