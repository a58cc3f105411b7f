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
import { conv2dOp } from './conv2d.js';
import { gradientCheckOptions, layerOutput } from './spatial-test-utils.js';

interface Conv2DCase {
  filters: number;
  kernelSize: number[];
  strides?: number[];
  dilations?: number[];
  padding?: 'same' | 'valid';
  useBias?: boolean;
  activation: 'linear' | 'relu' | 'tanh' | 'sigmoid';
}

const CASES: Conv2DCase[] = [
  { filters: 4, kernelSize: [3, 3], padding: 'same', activation: 'relu' },
  // Strides 2, 'same' padding, non-square kernel: one padded row and column, both after.
  { filters: 3, kernelSize: [2, 3], strides: [2, 2], padding: 'same', activation: 'tanh' },
  {
    filters: 2,
    kernelSize: [2, 3],
    dilations: [2, 1],
    padding: 'valid',
    useBias: false,
    activation: 'linear',
  },
  { filters: 3, kernelSize: [3], strides: [3, 2], activation: 'sigmoid' },
];

describeEachBackend('core.Conv2D', (backend) => {
  guardLeaks();

  for (const attrs of CASES) {
    it(`matches tfjs-layers' Conv2D (${JSON.stringify(attrs)})`, async () => {
      const x = seededUniform([2, 7, 8, 3], { seed: 3 });
      const params = opParams(conv2dOp, { ...attrs }, [x]);
      const layer = tfl.layers.conv2d({
        filters: attrs.filters,
        // A one-value size is square, as in Keras; tfjs-layers wants it as a number.
        kernelSize: attrs.kernelSize.length === 1 ? attrs.kernelSize[0]! : attrs.kernelSize,
        strides: attrs.strides ?? 1,
        dilationRate: (attrs.dilations as [number, number] | undefined) ?? 1,
        padding: attrs.padding ?? 'valid',
        useBias: attrs.useBias ?? true,
        activation: attrs.activation,
      });
      const weights = params.bias ? [params.kernel!, params.bias] : [params.kernel!];
      const expected = layerOutput(layer, weights, x);
      const { outputs } = await runOp(conv2dOp, { attrs: { ...attrs }, inputs: [x], params });
      await expectClose(outputs[0]!, expected, { label: 'Conv2D' });
      tf.dispose([x, expected, ...outputs, ...Object.values(params)]);
    });
  }

  it('has finite-difference gradients for its input, kernel and bias (strides 2, same)', async () => {
    const x = seededUniform([2, 5, 6, 2], { seed: 5 });
    const attrs = { filters: 3, kernelSize: [3, 3], strides: [2, 2], padding: 'same', activation: 'tanh' };
    await checkOpGradients(conv2dOp, { attrs, inputs: [x] }, gradientCheckOptions(backend));
    x.dispose();
  });
});

describe('core.Conv2D shapes, params and FLOPs', () => {
  const attrs = resolveAttrs(
    conv2dOp,
    { filters: 8, kernelSize: [3, 3], strides: [2, 2], padding: 'same' },
    'c',
  );
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('keeps a symbolic batch and computes the spatial sizes', () => {
    expect(conv2dOp.inferShape(attrs, input([BATCH, 28, 27, 3]))).toEqual([
      { shape: [BATCH, 14, 14, 8], dtype: 'float32' },
    ]);
    expect(conv2dOp.inferShape(attrs, input([BATCH, 'h', 9, 3]))[0]!.shape).toEqual([
      BATCH,
      'ceil((h)/2)',
      5,
      8,
    ]);
  });

  it('declares a Keras-shaped kernel with Glorot fans, and a bias only with useBias', () => {
    expect(conv2dOp.params!(attrs, input([BATCH, 8, 8, 3]))).toEqual([
      { name: 'kernel', shape: [3, 3, 3, 8], init: { kind: 'glorotUniform', fanIn: 27, fanOut: 72 } },
      { name: 'bias', shape: [8], init: { kind: 'zeros' } },
    ]);
    const noBias = resolveAttrs(conv2dOp, { filters: 2, kernelSize: [1, 1], useBias: false }, 'c');
    expect(conv2dOp.params!(noBias, input([BATCH, 4, 4, 3])).map((p) => p.name)).toEqual(['kernel']);
  });

  it('rejects a non-NHWC input, a too-small valid input and strided dilations', () => {
    expect(() => conv2dOp.inferShape(attrs, input([BATCH, 8, 3]))).toThrow(/NHWC/);
    expect(() => conv2dOp.inferShape(attrs, input([BATCH, 8, 8, 'c']))).toThrow(/concrete channel count/);
    const valid = resolveAttrs(conv2dOp, { filters: 1, kernelSize: [5, 5] }, 'c');
    expect(() => conv2dOp.inferShape(valid, input([BATCH, 4, 8, 1]))).toThrow(/smaller than the window/);
    const both = resolveAttrs(
      conv2dOp,
      { filters: 1, kernelSize: [3, 3], strides: [2, 2], dilations: [2, 2] },
      'c',
    );
    expect(() => conv2dOp.inferShape(both, input([BATCH, 8, 8, 1]))).toThrow(/cannot both exceed 1/);
  });

  it('counts 2 FLOPs per multiply-add plus the bias and activation', () => {
    const relu = resolveAttrs(conv2dOp, { filters: 4, kernelSize: [3, 3], activation: 'relu' }, 'c');
    // 2 * 5 * 6 outputs * 4 channels, each 3*3*2 multiply-adds, plus bias and relu.
    expect(conv2dOp.flops(relu, [[2, 7, 8, 2]], [[2, 5, 6, 4]])).toBe(240 * (2 * 18 + 1 + 1));
  });

  it('declares its input and filter channel spaces, and resizes to fewer filters', () => {
    const x = input([BATCH, 28, 27, 3]);
    const y = [{ name: 'y', ...conv2dOp.inferShape(attrs, x)[0]! }];
    expect(conv2dOp.channels!(attrs, x, y)).toEqual({
      spaces: { in: 3, out: 8 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'in' },
        { tensor: paramTensor('kernel'), axis: 2, space: 'in' },
        { tensor: paramTensor('kernel'), axis: 3, space: 'out' },
        { tensor: paramTensor('bias'), axis: 0, space: 'out' },
        { tensor: outputTensor(0), axis: 3, space: 'out' },
      ],
    });
    // Two of three input channels and five of eight filters kept.
    const narrow = input([BATCH, 28, 27, 2]);
    const wanted = [{ name: 'y', dtype: 'float32' as const, shape: [BATCH, 14, 14, 5] }];
    const resized = conv2dOp.resize!(attrs, narrow, wanted, { in: 2, out: 5 });
    expect(resized.filters).toBe(5);
    expect(conv2dOp.inferShape(resized, narrow)[0]!.shape).toEqual([BATCH, 14, 14, 5]);
    expect(conv2dOp.params!(resized, narrow).map((p) => p.shape)).toEqual([[3, 3, 2, 5], [5]]);
  });
});
