import { DynnError } from '@dynn/core';
import { type Tensor1D, type Tensor2D, tensor1d, tensor2d } from '@tensorflow/tfjs-core';
import type { DataLocation } from './byte-source.js';
import { parseNumberTable } from './number-table.js';
import { readDataFile } from './read-data-file.js';

const FILE = 'digits.csv.gz';
const FEATURES = 64;
const MAX_FEATURE = 16;

/** Tensors made by {@link Digits.toTensors}; the caller disposes them. */
export interface DigitsTensors {
  /** `[count, 64]` float32 features scaled to [0, 1] (divided by 16). */
  features: Tensor2D;
  /** `[count]` int32 digit labels 0..9. */
  labels: Tensor1D;
}

/** The UCI optical digits: 8x8 images of handwritten digits. */
export interface Digits {
  /** Number of digits (1,797). */
  count: number;
  /** Features per digit: 64, an 8x8 image row-major. */
  numFeatures: number;
  /** `count * numFeatures` pixel counts, 0..16, digit after digit. */
  features: Uint8Array;
  /** `count` labels, the digit shown (0..9). */
  labels: Uint8Array;
  /**
   * The set as tfjs tensors (see {@link DigitsTensors}), or only the digits at `rows` in that
   * order (a shuffled split); the caller disposes them.
   */
  toTensors(rows?: ArrayLike<number>): DigitsTensors;
}

function digitsTensors(digits: Digits, rows?: ArrayLike<number>): DigitsTensors {
  const picked = rows ?? Array.from({ length: digits.count }, (_, i) => i);
  const width = digits.numFeatures;
  const features = new Float32Array(picked.length * width);
  for (let i = 0; i < picked.length; i++) {
    const row = picked[i]!;
    if (!Number.isInteger(row) || row < 0 || row >= digits.count) {
      throw new DynnError('INVALID_INPUT', `digits.toTensors: row ${row} is not in 0..${digits.count - 1}.`);
    }
    for (let f = 0; f < width; f++) features[i * width + f] = digits.features[row * width + f]! / MAX_FEATURE;
  }
  return {
    features: tensor2d(features, [picked.length, width], 'float32'),
    labels: tensor1d(
      Int32Array.from(picked, (row) => digits.labels[row]!),
      'int32',
    ),
  };
}

/**
 * Loads the UCI optical recognition of handwritten digits set (as packaged by scikit-learn, BSD):
 * 1,797 digits, each 64 pixel counts 0..16 and a label. Small enough for unit tests and for the
 * browser (pass `baseUrl` there). Throws a `DATA_MISSING` or `DATA_CORRUPT` `DynnError` naming
 * the file when it is absent or damaged.
 *
 * @example
 * ```ts
 * const digits = await loadDigits();
 * const { features, labels } = digits.toTensors(); // [1797, 64] and [1797]
 * ```
 */
export async function loadDigits(location: DataLocation = {}): Promise<Digits> {
  const table = parseNumberTable(await readDataFile(FILE, location), {
    columns: FEATURES + 1,
    header: false,
    file: FILE,
  });
  const count = table.rows;
  const features = new Uint8Array(count * FEATURES);
  const labels = new Uint8Array(count);
  for (let row = 0, at = 0; row < count; row++) {
    for (let feature = 0; feature < FEATURES; feature++)
      features[row * FEATURES + feature] = table.values[at++]!;
    labels[row] = table.values[at++]!;
  }
  const digits: Digits = {
    count,
    numFeatures: FEATURES,
    features,
    labels,
    toTensors: (rows) => digitsTensors(digits, rows),
  };
  return digits;
}
