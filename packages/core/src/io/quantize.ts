import type * as tf from '@tensorflow/tfjs-core';
import { DynnError } from '../errors.js';

/**
 * How a float32 weight may be stored, as the tfjs converter writes it: `uint8` / `uint16` affine
 * (value = q * scale + min, one or two bytes per element) or `float16` (two bytes per element).
 */
export type QuantizationDType = 'uint8' | 'uint16' | 'float16';

/** The quantization dtypes, with their size in bytes per element. */
export const QUANTIZATION_BYTES: Readonly<Record<QuantizationDType, number>> = Object.freeze({
  uint8: 1,
  uint16: 2,
  float16: 2,
});

/** True for a {@link QuantizationDType}. */
export function isQuantizationDType(value: unknown): value is QuantizationDType {
  return typeof value === 'string' && Object.hasOwn(QUANTIZATION_BYTES, value);
}

/** The `quantization` field of a tfjs weights manifest entry. */
export interface Quantization {
  /** How each value is stored. */
  dtype: QuantizationDType;
  /** The (nudged) minimum added back, for uint8 / uint16. */
  min?: number;
  /** The step between quantized values, for uint8 / uint16. */
  scale?: number;
}

/** Rounds half to even, as numpy's `np.round` (which the tfjs converter uses) does. */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Affine quantization exactly as the tensorflowjs converter does it
 * (`tensorflowjs/quantization.py`): the range [min, max] of the values is nudged so that 0 maps
 * to a whole step when the range covers it, then each value becomes round((v - min) / scale).
 * Dequantized, every value is within scale / 2 of the original.
 */
function quantizeAffine(
  values: Float32Array,
  dtype: 'uint8' | 'uint16',
): { bytes: Uint8Array | Uint16Array; min: number; scale: number } {
  const quantMax = dtype === 'uint8' ? 255 : 65535;
  const bytes = dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  let low = Number.POSITIVE_INFINITY;
  let high = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  if (values.length === 0) return { bytes, min: 0, scale: 1 };
  // One value only: every element is stored as 0 and dequantizes to `low` exactly.
  if (low === high) return { bytes, min: low, scale: 1 };
  const scale = (high - low) / quantMax;
  let min = low;
  let max = high;
  if (low <= 0 && high >= 0) {
    const zeroPoint = roundHalfEven(-low / scale);
    min = -zeroPoint * scale;
    max = quantMax * scale + min;
  }
  for (let i = 0; i < values.length; i++) {
    const clipped = Math.min(Math.max(values[i]!, min), max);
    bytes[i] = Math.min(Math.max(roundHalfEven((clipped - min) / scale), 0), quantMax);
  }
  return { bytes, min, scale };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The IEEE half-precision bits of `value` (rounded to float32 first), rounding to the nearest
 * half, ties to even, as numpy's `astype(np.float16)` does: magnitudes from 65520 up become
 * infinity, below 2^-25 zero.
 */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // A half subnormal: the 24-bit mantissa (implicit 1 included) shifted into 10 bits.
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa moves to the next exponent; past the largest half it is infinity.
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** The largest finite half-precision value. */
const FLOAT16_MAX = 65504;

/**
 * Quantizes one float32 weight. Throws `INVALID_OPTION` naming the weight when it holds NaN or
 * infinite values, or (float16) values beyond the half-precision range, which the quantized file
 * could not store.
 */
export function quantizeValues(
  values: Float32Array,
  dtype: QuantizationDType,
  name: string,
): { bytes: Uint8Array; quantization: Quantization } {
  for (const v of values) {
    if (!Number.isFinite(v)) {
      throw new DynnError(
        'INVALID_OPTION',
        `Weight '${name}' holds ${v}, which quantize: '${dtype}' cannot store. Save without quantize, or fix the weights first.`,
      );
    }
  }
  const asBytes = (view: Uint8Array | Uint16Array) =>
    new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  if (dtype === 'float16') {
    const halves = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const half = toFloat16Bits(values[i]!);
      if ((half & 0x7c00) === 0x7c00) {
        throw new DynnError(
          'INVALID_OPTION',
          `Weight '${name}' holds ${values[i]}, beyond the float16 range of ±${FLOAT16_MAX}. Use quantize: 'uint16' or 'uint8', or save without quantize.`,
        );
      }
      halves[i] = half;
    }
    return { bytes: asBytes(halves), quantization: { dtype } };
  }
  const { bytes, min, scale } = quantizeAffine(values, dtype);
  return { bytes: asBytes(bytes), quantization: { dtype, min, scale } };
}

/** One tensor to encode: its name and values. */
export interface NamedValues {
  name: string;
  shape: number[];
  dtype: tf.DataType;
  values: tf.TypedArray;
}

/**
 * Encodes weights in the tfjs binary format, float32 ones quantized to `dtype` (int32 and bool
 * ones stored as they are), with tfjs weights-manifest entries that carry `quantization`.
 */
export function encodeQuantizedWeights(
  tensors: readonly NamedValues[],
  dtype: QuantizationDType,
): { data: ArrayBuffer; specs: tf.io.WeightsManifestEntry[] } {
  const pieces: Uint8Array[] = [];
  const specs: tf.io.WeightsManifestEntry[] = [];
  for (const { name, shape, dtype: tensorDtype, values } of tensors) {
    if (tensorDtype === 'float32') {
      const { bytes, quantization } = quantizeValues(values as Float32Array, dtype, name);
      pieces.push(bytes);
      specs.push({ name, shape, dtype: 'float32', quantization });
    } else {
      pieces.push(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      specs.push({ name, shape, dtype: tensorDtype as tf.io.WeightsManifestEntry['dtype'] });
    }
  }
  const data = new Uint8Array(pieces.reduce((sum, p) => sum + p.byteLength, 0));
  let offset = 0;
  for (const piece of pieces) {
    data.set(piece, offset);
    offset += piece.byteLength;
  }
  return { data: data.buffer, specs };
}
