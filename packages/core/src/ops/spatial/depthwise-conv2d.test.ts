import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  opParams,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import { BATCH } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { depthwiseConv2dOp } from './depthwise-conv2d.js';
import { dilateKernel, gradientCheckOptions, layerOutput } from './spatial-test-utils.js';

interface DepthwiseCase {
  kernelSize: [number, number];
  strides?: [number, number];
  dilations?: [number, number];
  padding?: 'same' | 'valid';
  depthMultiplier?: number;
  useBias?: boolean;
  activation: 'linear' | 'relu' | 'tanh';
}

const CASES: DepthwiseCase[] = [
  { kernelSize: [3, 3], padding: 'same', activation: 'relu' },
  // Strides 2, 'same' (one padded row and column, both after), a multiplier, a non-square kernel.
  { kernelSize: [2, 3], strides: [2, 2], padding: 'same', depthMultiplier: 2, activation: 'tanh' },
  { kernelSize: [2, 2], dilations: [2, 2], depthMultiplier: 3, useBias: false, activation: 'linear' },
];

describeEachBackend('core.DepthwiseConv2D', (backend) => {
  guardLeaks();

  for (const attrs of CASES) {
    it(`matches tfjs-layers' DepthwiseConv2D (${JSON.stringify(attrs)})`, async () => {
      const x = seededUniform([2, 7, 6, 3], { seed: 3 });
      const params = opParams(depthwiseConv2dOp, { ...attrs }, [x]);
      // tfjs-layers' DepthwiseConv2D ignores dilationRate, so the reference gets the dilation
      // as zeros spread between the kernel taps instead (the same convolution).
      const dilations = attrs.dilations ?? [1, 1];
      const kernel = dilateKernel(params.depthwiseKernel as tf.Tensor4D, dilations);
      const layer = tfl.layers.depthwiseConv2d({
        kernelSize: [kernel.shape[0], kernel.shape[1]],
        strides: attrs.strides ?? 1,
        padding: attrs.padding ?? 'valid',
        depthMultiplier: attrs.depthMultiplier ?? 1,
        useBias: attrs.useBias ?? true,
        activation: attrs.activation,
      });
      const weights = params.bias ? [kernel, params.bias] : [kernel];
      const expected = layerOutput(layer, weights, x);
      const { outputs } = await runOp(depthwiseConv2dOp, { attrs: { ...attrs }, inputs: [x], params });
      await expectClose(outputs[0]!, expected, { label: 'DepthwiseConv2D' });
      tf.dispose([x, kernel, expected, ...outputs, ...Object.values(params)]);
    });
  }

  it('has finite-difference gradients for its input, kernel and bias (strides 2, same, multiplier 2)', async () => {
    const x = seededUniform([2, 5, 6, 2], { seed: 5 });
    const attrs = {
      kernelSize: [3, 3],
      strides: [2, 2],
      padding: 'same',
      depthMultiplier: 2,
      activation: 'tanh',
    };
    await checkOpGradients(depthwiseConv2dOp, { attrs, inputs: [x] }, gradientCheckOptions(backend));
    x.dispose();
  });
});

describe('core.DepthwiseConv2D shapes, params and FLOPs', () => {
  const attrs = resolveAttrs(depthwiseConv2dOp, { kernelSize: [3, 3], depthMultiplier: 2 }, 'd');
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('keeps a symbolic batch and multiplies the channels', () => {
    expect(depthwiseConv2dOp.inferShape(attrs, input([BATCH, 9, 8, 3]))).toEqual([
      { shape: [BATCH, 7, 6, 6], dtype: 'float32' },
    ]);
  });

  it('declares Keras-shaped weights with Glorot fans', () => {
    expect(depthwiseConv2dOp.params!(attrs, input([BATCH, 9, 8, 3]))).toEqual([
      {
        name: 'depthwiseKernel',
        shape: [3, 3, 3, 2],
        init: { kind: 'glorotUniform', fanIn: 27, fanOut: 18 },
      },
      { name: 'bias', shape: [6], init: { kind: 'zeros' } },
    ]);
  });

  it('rejects a non-NHWC input and strided dilations', () => {
    expect(() => depthwiseConv2dOp.inferShape(attrs, input([BATCH, 9, 8]))).toThrow(/NHWC/);
    const both = resolveAttrs(
      depthwiseConv2dOp,
      { kernelSize: [3, 3], strides: [2, 1], dilations: [1, 2] },
      'd',
    );
    expect(() => depthwiseConv2dOp.inferShape(both, input([BATCH, 8, 8, 1]))).toThrow(/cannot both exceed 1/);
  });

  it('counts 2 FLOPs per multiply-add plus the bias', () => {
    // 1 * 7 * 6 positions * 6 channels, each 3*3 multiply-adds, plus the bias.
    expect(depthwiseConv2dOp.flops(attrs, [[1, 9, 8, 3]], [[1, 7, 6, 6]])).toBe(252 * (18 + 1));
  });

  it('declares one space of input channels, each owning depthMultiplier outputs', () => {
    const x = input([BATCH, 9, 8, 3]);
    const y = [{ name: 'y', ...depthwiseConv2dOp.inferShape(attrs, x)[0]! }];
    expect(depthwiseConv2dOp.channels!(attrs, x, y)).toEqual({
      spaces: { c: 3 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'c' },
        { tensor: paramTensor('depthwiseKernel'), axis: 2, space: 'c' },
        { tensor: paramTensor('bias'), axis: 0, space: 'c', block: 2 },
        { tensor: outputTensor(0), axis: 3, space: 'c', block: 2 },
      ],
    });
    // No attribute holds a channel count: two input channels give four outputs as they are.
    expect(depthwiseConv2dOp.resize).toBeUndefined();
    const narrow = input([BATCH, 9, 8, 2]);
    expect(depthwiseConv2dOp.inferShape(attrs, narrow)[0]!.shape).toEqual([BATCH, 7, 6, 4]);
    expect(depthwiseConv2dOp.params!(attrs, narrow).map((p) => p.shape)).toEqual([[3, 3, 2, 2], [4]]);
  });
});
