import { activateBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isDynnError } from '../errors.js';
import { encodeQuantizedWeights, quantizeValues, toFloat16Bits } from './quantize.js';

/** Dequantizes `bytes` with tfjs' own decoder, as tfjs-layers and loadModel do. */
async function dequantize(
  bytes: Uint8Array,
  quantization: tf.io.WeightsManifestEntry['quantization'],
  length: number,
): Promise<Float32Array> {
  const buffer = bytes.slice().buffer;
  const { w } = tf.io.decodeWeights(buffer, [{ name: 'w', shape: [length], dtype: 'float32', quantization }]);
  const values = (await w!.data()) as Float32Array;
  w!.dispose();
  return values;
}

describe('quantization as the tensorflowjs converter does it', () => {
  beforeAll(async () => {
    await activateBackend('cpu');
  });

  it('reproduces the converter docstring example (uint8 with a nudged zero)', () => {
    // tensorflowjs/write_weights.py: [0, -0.1, 1.2] -> [20, 0, 255], min -0.10196078817, scale 0.00509803940852.
    const { bytes, quantization } = quantizeValues(new Float32Array([0, -0.1, 1.2]), 'uint8', 'weight1');
    expect([...bytes]).toEqual([20, 0, 255]);
    expect(quantization.dtype).toBe('uint8');
    expect(quantization.min).toBeCloseTo(-0.10196078817, 10);
    expect(quantization.scale).toBeCloseTo(0.00509803940852, 12);
  });

  it('keeps every value within half a step, and zero exact, for uint8 and uint16', async () => {
    const values = new Float32Array(1000);
    for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * 1.7) * 3 - 0.4;
    values[17] = 0;
    for (const dtype of ['uint8', 'uint16'] as const) {
      const { bytes, quantization } = quantizeValues(values, dtype, 'w');
      expect(bytes.byteLength).toBe(values.length * (dtype === 'uint8' ? 1 : 2));
      const back = await dequantize(bytes, quantization, values.length);
      const halfStep = quantization.scale! / 2;
      for (let i = 0; i < values.length; i++) {
        expect(Math.abs(back[i]! - values[i]!), `${dtype} value ${i}`).toBeLessThanOrEqual(halfStep * 1.0001);
      }
      expect(back[17]).toBe(0);
    }
  });

  it('stores a constant weight as zeros with scale 1, and it dequantizes exactly', async () => {
    const { bytes, quantization } = quantizeValues(new Float32Array([0.25, 0.25, 0.25]), 'uint8', 'w');
    expect([...bytes]).toEqual([0, 0, 0]);
    expect(quantization).toEqual({ dtype: 'uint8', min: 0.25, scale: 1 });
    expect([...(await dequantize(bytes, quantization, 3))]).toEqual([0.25, 0.25, 0.25]);
  });

  it('converts float16 round-trip exactly for every finite half value', async () => {
    const halves = new Uint16Array(65536);
    for (let i = 0; i < halves.length; i++) halves[i] = i;
    const decoded = await dequantize(new Uint8Array(halves.buffer), { dtype: 'float16' }, halves.length);
    for (let bits = 0; bits < 65536; bits++) {
      const exponent = (bits >> 10) & 0x1f;
      if (exponent === 0x1f) continue; // infinities and NaNs
      if (toFloat16Bits(decoded[bits]!) !== bits) {
        throw new Error(
          `half 0x${bits.toString(16)} = ${decoded[bits]} encodes as 0x${toFloat16Bits(decoded[bits]!).toString(16)}`,
        );
      }
    }
  });

  it('rounds float16 to nearest, ties to even, overflowing and underflowing as numpy does', () => {
    const ulp = 2 ** -10;
    expect(toFloat16Bits(1 + ulp / 2)).toBe(0x3c00); // tie: 1.0 has the even mantissa
    expect(toFloat16Bits(1 + ulp * 1.5)).toBe(0x3c02); // tie: up to the even mantissa 2
    expect(toFloat16Bits(1 + ulp * 0.6)).toBe(0x3c01);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(65519)).toBe(0x7bff);
    expect(toFloat16Bits(65520)).toBe(0x7c00);
    expect(toFloat16Bits(-1e6)).toBe(0xfc00);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toFloat16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal
    expect(toFloat16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(toFloat16Bits(-0)).toBe(0x8000);
    expect(toFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
  });

  it('refuses weights it cannot store, naming the weight', () => {
    const refused = (values: number[], dtype: 'uint8' | 'float16') => {
      try {
        quantizeValues(new Float32Array(values), dtype, 'dense/kernel');
      } catch (error) {
        expect(isDynnError(error, 'INVALID_OPTION')).toBe(true);
        return (error as Error).message;
      }
      throw new Error('expected a refusal');
    };
    expect(refused([1, Number.NaN], 'uint8')).toMatch(/'dense\/kernel' holds NaN/);
    expect(refused([1, Number.POSITIVE_INFINITY], 'float16')).toMatch(/Infinity/);
    expect(refused([1, 70000], 'float16')).toMatch(/beyond the float16 range/);
  });

  it('encodes float32 tensors quantized and leaves int32 and bool ones as they are', () => {
    const { data, specs } = encodeQuantizedWeights(
      [
        { name: 'w', shape: [2, 2], dtype: 'float32', values: new Float32Array([0, 1, 2, 3]) },
        { name: 'steps', shape: [1], dtype: 'int32', values: new Int32Array([7]) },
        { name: 'mask', shape: [3], dtype: 'bool', values: new Uint8Array([1, 0, 1]) },
      ],
      'float16',
    );
    expect(specs).toEqual([
      { name: 'w', shape: [2, 2], dtype: 'float32', quantization: { dtype: 'float16' } },
      { name: 'steps', shape: [1], dtype: 'int32' },
      { name: 'mask', shape: [3], dtype: 'bool' },
    ]);
    expect(data.byteLength).toBe(4 * 2 + 4 + 3);
    expect([...new Int32Array(data.slice(8, 12))]).toEqual([7]);
    expect([...new Uint8Array(data.slice(12))]).toEqual([1, 0, 1]);
  });
});
