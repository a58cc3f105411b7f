import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import type { Dim } from '../../ir.js';
import { BATCH } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { reshapeOp } from './reshape.js';

describeEachBackend('core.Reshape', () => {
  guardLeaks();

  it("matches tfjs-layers' Reshape with an inferred -1, and has finite-difference gradients", async () => {
    const x = seededUniform([2, 3, 4]);
    const layer = tfl.layers.reshape({ targetShape: [-1, 2, 3] });
    const expected = layer.apply(x) as tf.Tensor;
    const { outputs } = await runOp(reshapeOp, { attrs: { shape: [-1, 2, 3] }, inputs: [x] });
    await expectClose(outputs[0]!, expected, { label: 'Reshape' });
    expect(outputs[0]!.shape).toEqual([2, 2, 2, 3]);
    await checkOpGradients(reshapeOp, { attrs: { shape: [4, 3] }, inputs: [x] });
    tf.dispose([x, expected, ...outputs]);
  });

  it('reshapes an empty batch (every row retired)', async () => {
    const x = tf.zeros([0, 6]);
    const { outputs } = await runOp(reshapeOp, { attrs: { shape: [3, -1] }, inputs: [x] });
    expect(outputs[0]!.shape).toEqual([0, 3, 2]);
    tf.dispose([x, ...outputs]);
  });
});

describe('core.Reshape shapes and FLOPs', () => {
  const info = (shape: (number | string)[]) => ({ name: 'x', dtype: 'float32' as const, shape });
  const infer = (target: number[], shape: (number | string)[]) =>
    reshapeOp.inferShape(resolveAttrs(reshapeOp, { shape: target }, 'reshape'), [info(shape)]);

  it('keeps the batch, infers -1, and lets -1 stand for one symbolic dimension', () => {
    expect(infer([-1, 4], [BATCH, 2, 6])[0]!.shape).toEqual([BATCH, 3, 4]);
    expect(infer([12], [BATCH, 2, 6])[0]!.shape).toEqual([BATCH, 12]);
    expect(infer([-1, 8, 8], [BATCH, 'time', 64])[0]!.shape).toEqual([BATCH, 'time', 8, 8]);
  });

  it('rejects sizes that do not match, two -1, zeros, and unmappable symbolic dimensions', () => {
    expect(() => infer([5], [BATCH, 2, 6])).toThrow(
      /cannot turn rows of shape \[2, 6\] \(12 values\) into \[5\]/,
    );
    expect(() => infer([-1, 5], [BATCH, 2, 6])).toThrow(/cannot turn rows/);
    expect(() => infer([-1, -1], [BATCH, 12])).toThrow(/more than one -1/);
    expect(() => infer([0, 12], [BATCH, 12])).toThrow(/sizes >= 1 and one -1 only/);
    expect(() => infer([8, 8], [BATCH, 'time', 64])).toThrow(/symbolic dimensions/);
  });

  it('computes nothing', () => {
    const attrs = resolveAttrs(reshapeOp, { shape: [-1] }, 'reshape');
    expect(reshapeOp.flops(attrs, [[2, 3, 4]], [[2, 12]])).toBe(0);
  });
});

describe('core.Reshape channels', () => {
  const value = (shape: Dim[]) => ({ name: 'v', dtype: 'float32' as const, shape });
  const declare = (shape: number[], x: Dim[]) => {
    const attrs = resolveAttrs(reshapeOp, { shape }, 'reshape');
    const [y] = reshapeOp.inferShape(attrs, [value(x)]);
    return reshapeOp.channels!(attrs, [value(x)], [value(y!.shape)]);
  };

  it('ties equal last axes', () => {
    expect(declare([2, 2, 6], [BATCH, 4, 6])).toEqual({
      spaces: { features: 6 },
      axes: [
        { tensor: inputTensor(0), axis: 2, space: 'features' },
        { tensor: outputTensor(0), axis: 3, space: 'features' },
      ],
    });
  });

  it('wraps a flattened last axis and a split one with the smaller size as the period', () => {
    expect(declare([-1, 12], [BATCH, 4, 6]).axes[1]).toEqual({
      tensor: outputTensor(0),
      axis: 2,
      space: 'features',
      period: 6,
    });
    // Splitting heads: [time, heads * 4] -> [time, heads, 4].
    const split = declare([-1, 3, 4], [BATCH, 'time', 12]);
    expect(split.spaces).toEqual({ features: 4 });
    expect(split.axes[0]).toEqual({ tensor: inputTensor(0), axis: 2, space: 'features', period: 4 });
  });

  it('maps nothing when neither last axis divides the other', () => {
    expect(declare([6, 4], [BATCH, 4, 6])).toEqual({ spaces: {}, axes: [] });
  });

  it('resizes shape to the wanted output, keeping the -1', () => {
    const attrs = resolveAttrs(reshapeOp, { shape: [-1, 12] }, 'reshape');
    const smaller = value([BATCH, 4, 5]);
    const resized = reshapeOp.resize!(attrs, [smaller], [value([BATCH, 2, 10])], { features: 5 });
    expect(resized.shape).toEqual([-1, 10]);
    expect(reshapeOp.inferShape(resized, [smaller])[0]!.shape).toEqual([BATCH, 2, 10]);
  });
});
