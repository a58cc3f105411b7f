import { DynnError } from '@dynn/core';
import type { ByteSource, DataLocation } from './byte-source.js';
import { sha256Hex } from './checksum.js';
import { DATA_FILES, type DataFileName } from './data-manifest.js';
import { fileByteSource } from './file-byte-source.js';
import { gunzip } from './gunzip.js';
import { isNodeRuntime } from './runtime.js';
import { urlByteSource } from './url-byte-source.js';

const FIX =
  'Reinstall @dynn/datasets to restore its data/ folder, or, where you passed dataDir, baseUrl or ' +
  'source, put the original file there.';

/**
 * The byte source `location` names: `source`, else a fetch source for `baseUrl`, else (in Node)
 * the files under `dataDir` or the package's own `data/` folder. Throws a `DATA_MISSING`
 * {@link DynnError} naming `file` where no location applies (a browser without `baseUrl`).
 */
export async function resolveByteSource(location: DataLocation, file: DataFileName): Promise<ByteSource> {
  if (location.source !== undefined) return location.source;
  if (location.baseUrl !== undefined) return urlByteSource(location.baseUrl);
  if (isNodeRuntime()) return fileByteSource(location.dataDir);
  throw new DynnError(
    'DATA_MISSING',
    `Data file '${file}' cannot be found: outside Node the loaders need to know where the data is. ` +
      "Pass baseUrl, the URL serving @dynn/datasets's data/ folder (or a byte source as source).",
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
 * Reads `file` from `source` and checks its SHA-256: that of the `.gz` file, or, when the bytes
 * are not gzip (a server sent the file with `Content-Encoding: gzip`, so `fetch` decompressed
 * it), that of its contents. Throws a {@link DynnError} naming the file: `DATA_MISSING` when it is
 * absent or unreadable, `DATA_CORRUPT` when its checksum does not match.
 */
export async function readVerifiedBytes(file: DataFileName, source: ByteSource): Promise<VerifiedBytes> {
  const where = source.locate(file);
  let bytes: Uint8Array<ArrayBuffer> | undefined;
  try {
    bytes = await source.read(file);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const message = `Data file '${file}' could not be read from ${where}: ${reason}. ${FIX}`;
    throw new DynnError('DATA_MISSING', message, { file: where });
  }
  if (bytes === undefined) {
    const message = `Data file '${file}' is missing: nothing at ${where}. ${FIX}`;
    throw new DynnError('DATA_MISSING', message, { file: where });
  }
  const gzipped = bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
  const expected = gzipped ? DATA_FILES[file].gzipped : DATA_FILES[file].contents;
  const actual = await sha256Hex(bytes);
  if (actual !== expected) {
    const what = gzipped ? 'its SHA-256' : 'the SHA-256 of its (already decompressed) contents';
    throw new DynnError(
      'DATA_CORRUPT',
      `Data file '${file}' at ${where} is corrupt: ${what} is ${actual}, expected ${expected}. ${FIX}`,
      { file: where },
    );
  }
  return { bytes, gzipped };
}

/**
 * Reads `file` from `location`, verifies its checksum and returns its decompressed contents.
 * Throws a `DATA_MISSING` or `DATA_CORRUPT` {@link DynnError} naming the file.
 */
export async function readDataFile(
  file: DataFileName,
  location: DataLocation = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const { bytes, gzipped } = await readVerifiedBytes(file, await resolveByteSource(location, file));
  return gzipped ? gunzip(bytes) : bytes;
}
