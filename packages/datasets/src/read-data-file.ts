import { DynnError } from '@dynn/core';
import type { ByteSource, DataLocation } from './byte-source.js';
import { sha256Hex } from './checksum.js';
import { DATASETS_BUNDLE, type DataBundle, type DataFileName } from './data-manifest.js';
import { fileByteSource } from './file-byte-source.js';
import { gunzip } from './gunzip.js';
import { isNodeRuntime } from './runtime.js';
import { urlByteSource } from './url-byte-source.js';

function fix(bundle: DataBundle): string {
  return (
    `Reinstall ${bundle.packageName} to restore its data/ folder, or, where you passed dataDir, ` +
    'baseUrl or source, put the original file there.'
  );
}

/**
 * The byte source `location` names: `source`, else a fetch source for `baseUrl`, else (in Node)
 * the files under `dataDir` or the bundle's own `data/` folder. Throws a `DATA_MISSING`
 * {@link DynnError} naming `file` where no location applies (a browser without `baseUrl`).
 */
export async function resolveByteSource(
  location: DataLocation,
  file: string,
  bundle: DataBundle = DATASETS_BUNDLE,
): Promise<ByteSource> {
  if (location.source !== undefined) return location.source;
  if (location.baseUrl !== undefined) return urlByteSource(location.baseUrl);
  if (isNodeRuntime()) return fileByteSource(location.dataDir ?? bundle.dataFolder());
  throw new DynnError(
    'DATA_MISSING',
    `Data file '${file}' cannot be found: outside Node the loaders need to know where the data is. ` +
      `Pass baseUrl, the URL serving ${bundle.packageName}'s data/ folder (or a byte source as source).`,
    { file },
  );
}

/** A data file's bytes, checked against its checksum. */
export interface VerifiedBytes {
  /** The bytes as read. */
  bytes: Uint8Array<ArrayBuffer>;
  /** True when they are still gzipped; false when the server had `fetch` decompress them. */
  gzipped: boolean;
}

const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * Reads `file` of `bundle` from `source` and checks its SHA-256: that of the `.gz` file, or, when
 * the bytes are not gzip (a server sent the file with `Content-Encoding: gzip`, so `fetch`
 * decompressed it), that of its contents. Throws a {@link DynnError} naming the file:
 * `DATA_MISSING` when it is absent or unreadable, `DATA_CORRUPT` when its checksum does not match.
 */
export async function readVerifiedBytes<File extends string>(
  file: File,
  source: ByteSource,
  bundle: DataBundle<File>,
): Promise<VerifiedBytes> {
  const where = source.locate(file);
  let bytes: Uint8Array<ArrayBuffer> | undefined;
  try {
    bytes = await source.read(file);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const message = `Data file '${file}' could not be read from ${where}: ${reason}. ${fix(bundle)}`;
    throw new DynnError('DATA_MISSING', message, { file: where });
  }
  if (bytes === undefined) {
    const message = `Data file '${file}' is missing: nothing at ${where}. ${fix(bundle)}`;
    throw new DynnError('DATA_MISSING', message, { file: where });
  }
  const gzipped = bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
  const checksums = bundle.files[file];
  const expected = gzipped ? checksums.gzipped : checksums.contents;
  const actual = await sha256Hex(bytes);
  if (actual !== expected) {
    const what = gzipped ? 'its SHA-256' : 'the SHA-256 of its (already decompressed) contents';
    throw new DynnError(
      'DATA_CORRUPT',
      `Data file '${file}' at ${where} is corrupt: ${what} is ${actual}, expected ${expected}. ${fix(bundle)}`,
      { file: where },
    );
  }
  return { bytes, gzipped };
}

/**
 * Reads `file`, one of `bundle`'s data files, from `location` (by default, in Node, the bundle's
 * own `data/` folder), checks its SHA-256 and returns its decompressed contents: what every
 * loader of `@dynn/datasets` reads its files with, and what a data package such as
 * `@dynn/data-fashion-mnist` reads its own with. Throws a `DATA_MISSING` or `DATA_CORRUPT`
 * {@link DynnError} naming the file, where it looked and the package to reinstall.
 *
 * @example
 * ```ts
 * const bundle: DataBundle<'numbers.csv.gz'> = {
 *   packageName: '@me/data-numbers',
 *   files: { 'numbers.csv.gz': { gzipped: '…', contents: '…' } },
 *   dataFolder: () => new URL('../data/', import.meta.url),
 * };
 * const text = new TextDecoder().decode(await readBundledFile(bundle, 'numbers.csv.gz'));
 * ```
 */
export async function readBundledFile<File extends string>(
  bundle: DataBundle<File>,
  file: File,
  location: DataLocation = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const source = await resolveByteSource(location, file, bundle);
  const { bytes, gzipped } = await readVerifiedBytes(file, source, bundle);
  return gzipped ? gunzip(bytes) : bytes;
}

/**
 * Reads one of `@dynn/datasets`'s own files from `location`, verifies its checksum and returns
 * its decompressed contents. Throws a `DATA_MISSING` or `DATA_CORRUPT` {@link DynnError} naming
 * the file.
 */
export function readDataFile(
  file: DataFileName,
  location: DataLocation = {},
): Promise<Uint8Array<ArrayBuffer>> {
  return readBundledFile(DATASETS_BUNDLE, file, location);
}
