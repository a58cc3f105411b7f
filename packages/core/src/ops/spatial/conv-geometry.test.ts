import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  checkStridesOrDilations,
  conv2dGeometry,
  convOutputDim,
  imageInfo,
  type PaddingMode,
  type Pair,
  spatialPair,
} from './conv-geometry.js';

describe('conv geometry', () => {
  it("matches tfjs's computeConv2DInfo for sizes, strides, dilations and both paddings", () => {
    const cases: { size: Pair; kernel: Pair; strides: Pair; dilations: Pair }[] = [];
    for (const size of [5, 6, 7, 8]) {
      for (const kernel of [1, 2, 3, 4]) {
        for (const stride of [1, 2, 3])
          cases.push({
            size: [size, size + 1],
            kernel: [kernel, 3],
            strides: [stride, 1],
            dilations: [1, 1],
          });
        for (const dilation of [2, 3])
          cases.push({
            size: [size + 3, size],
            kernel: [kernel, 2],
            strides: [1, 1],
            dilations: [dilation, 1],
          });
      }
    }
    for (const c of cases) {
      for (const padding of ['same', 'valid'] as PaddingMode[]) {
        const effective = (c.kernel[0] - 1) * c.dilations[0] + 1;
        if (padding === 'valid' && effective > c.size[0]) continue;
        const ours = conv2dGeometry(c.size[0], c.size[1], c.kernel, { ...c, padding });
        const theirs = tf.backend_util.computeConv2DInfo(
          [1, c.size[0], c.size[1], 2],
          [c.kernel[0], c.kernel[1], 2, 2],
          c.strides,
          c.dilations,
          padding,
        );
        const label = JSON.stringify({ ...c, padding });
        expect([ours.outHeight, ours.outWidth], label).toEqual([theirs.outHeight, theirs.outWidth]);
        const { top, bottom, left, right } = theirs.padInfo;
        expect(ours.padding, label).toEqual({ top, bottom, left, right });
      }
    }
  });

  it('puts the odd element of same padding after (bottom/right), as TensorFlow does', () => {
    const g = conv2dGeometry(6, 6, [4, 2], { strides: [1, 2], dilations: [1, 1], padding: 'same' });
    expect(g.padding).toEqual({ top: 1, bottom: 2, left: 0, right: 0 });
  });

  it('keeps symbolic sizes symbolic, renaming them when the op changes them', () => {
    expect(convOutputDim('h', 3, 1, 1, 'same')).toBe('h');
    expect(convOutputDim('h', 3, 2, 1, 'same')).toBe('ceil((h)/2)');
    expect(convOutputDim('h', 3, 1, 2, 'valid')).toBe('h-4');
    expect(convOutputDim(9, 3, 2, 1, 'valid')).toBe(4);
  });

  it('rejects windows larger than a valid input, bad pairs and strided dilations', () => {
    expect(() => convOutputDim(2, 3, 1, 1, 'valid')).toThrow(/smaller than the window size 3/);
    expect(() => convOutputDim(4, 3, 1, 2, 'valid')).toThrow(/dilated window size 5/);
    expect(spatialPair([3], 'kernelSize')).toEqual([3, 3]);
    expect(() => spatialPair([1, 2, 3], 'kernelSize')).toThrow(/'kernelSize' must hold 1 or 2 values/);
    expect(() => checkStridesOrDilations([2, 1], [1, 2])).toThrow(/cannot both exceed 1/);
    expect(() => checkStridesOrDilations([2, 2], [1, 1])).not.toThrow();
  });

  it('reads NHWC inputs and rejects other ranks or a symbolic channel count', () => {
    const info = imageInfo({ name: 'x', dtype: 'float32', shape: ['batch', 'h', 5, 3] });
    expect(info).toEqual({ batch: 'batch', height: 'h', width: 5, channels: 3 });
    expect(() => imageInfo({ name: 'x', dtype: 'float32', shape: ['batch', 5, 3] })).toThrow(/NHWC.*rank 3/);
    expect(() => imageInfo({ name: 'x', dtype: 'float32', shape: ['batch', 5, 5, 'c'] })).toThrow(
      /concrete channel count/,
    );
  });
});
