import { DynnError } from '@dynn/core';

/** An unsigned-byte array read from an IDX file (the format MNIST and Fashion-MNIST use). */
export interface IdxArray {
  /** Dimensions, outermost first, e.g. `[10000, 28, 28]`. */
  shape: number[];
  /** The values, row-major: a view into the file's bytes, not a copy. */
  data: Uint8Array<ArrayBuffer>;
}

const UNSIGNED_BYTE = 0x08;

/**
 * Reads an unsigned-byte IDX file: a 4-byte magic (two zero bytes, the type code, the number of
 * dimensions), each dimension as a big-endian 32-bit integer, then the data. Throws a
 * `DATA_CORRUPT` {@link DynnError} naming `file` when the header does not match the bytes; its
 * message says to reinstall `packageName`, the package that ships the file.
 *
 * @example
 * ```ts
 * const bytes = await readBundledFile(bundle, 't10k-labels-idx1-ubyte.gz');
 * const { shape, data } = parseIdx(bytes, 't10k-labels-idx1-ubyte.gz', bundle.packageName);
 * ```
 */
export function parseIdx(
  bytes: Uint8Array<ArrayBuffer>,
  file: string,
  packageName = '@dynn/datasets',
): IdxArray {
  const fail = (what: string): never => {
    throw new DynnError(
      'DATA_CORRUPT',
      `Data file '${file}' is not a valid IDX file: ${what}. Reinstall ${packageName} to restore the original file.`,
      { file },
    );
  };
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) fail('bad magic number');
  if (bytes[2] !== UNSIGNED_BYTE) fail(`element type 0x${bytes[2]!.toString(16)} is not unsigned byte`);
  const rank = bytes[3]!;
  const headerLength = 4 + 4 * rank;
  if (bytes.length < headerLength) fail('header is truncated');
  const view = new DataView(bytes.buffer, bytes.byteOffset, headerLength);
  const shape = Array.from({ length: rank }, (_, axis) => view.getUint32(4 + 4 * axis, false));
  const size = shape.reduce((product, dimension) => product * dimension, 1);
  if (bytes.length !== headerLength + size) {
    fail(`header promises ${size} values but the file holds ${bytes.length - headerLength}`);
  }
  return { shape, data: bytes.subarray(headerLength) };
}
