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
import { separableConv2dOp } from './separable-conv2d.js';
import { gradientCheckOptions, layerOutput } from './spatial-test-utils.js';

interface SeparableCase {
  filters: number;
  kernelSize: [number, number];
  strides?: [number, number];
  dilations?: [number, number];
  padding?: 'same' | 'valid';
  depthMultiplier?: number;
  useBias?: boolean;
  activation: 'linear' | 'relu' | 'tanh';
}

const CASES: SeparableCase[] = [
  { filters: 4, kernelSize: [3, 3], padding: 'same', activation: 'relu' },
  {
    filters: 3,
    kernelSize: [2, 3],
    strides: [2, 2],
    padding: 'same',
    depthMultiplier: 2,
    activation: 'tanh',
  },
  { filters: 2, kernelSize: [2, 2], dilations: [2, 2], useBias: false, activation: 'linear' },
];

describeEachBackend('core.SeparableConv2D', (backend) => {
  guardLeaks();

  for (const attrs of CASES) {
    it(`matches tfjs-layers' SeparableConv2D (${JSON.stringify(attrs)})`, async () => {
      const x = seededUniform([2, 7, 6, 3], { seed: 3 });
      const params = opParams(separableConv2dOp, { ...attrs }, [x]);
      const layer = tfl.layers.separableConv2d({
        filters: attrs.filters,
        kernelSize: attrs.kernelSize,
        strides: attrs.strides ?? 1,
        dilationRate: attrs.dilations ?? 1,
        padding: attrs.padding ?? 'valid',
        depthMultiplier: attrs.depthMultiplier ?? 1,
        useBias: attrs.useBias ?? true,
        activation: attrs.activation,
      });
      const kernels = [params.depthwiseKernel!, params.pointwiseKernel!];
      const expected = layerOutput(layer, params.bias ? [...kernels, params.bias] : kernels, x);
      const { outputs } = await runOp(separableConv2dOp, { attrs: { ...attrs }, inputs: [x], params });
      await expectClose(outputs[0]!, expected, { label: 'SeparableConv2D' });
      tf.dispose([x, expected, ...outputs, ...Object.values(params)]);
    });
  }

  it('has finite-difference gradients for its input, both kernels and bias', async () => {
    const x = seededUniform([2, 5, 6, 2], { seed: 5 });
    const attrs = {
      filters: 3,
      kernelSize: [3, 3],
      strides: [2, 2],
      padding: 'same',
      depthMultiplier: 2,
      activation: 'tanh',
    };
    await checkOpGradients(separableConv2dOp, { attrs, inputs: [x] }, gradientCheckOptions(backend));
    x.dispose();
  });
});

describe('core.SeparableConv2D shapes, params and FLOPs', () => {
  const attrs = resolveAttrs(separableConv2dOp, { filters: 5, kernelSize: [3, 3], depthMultiplier: 2 }, 's');
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('keeps a symbolic batch and computes the spatial sizes', () => {
    expect(separableConv2dOp.inferShape(attrs, input([BATCH, 9, 8, 3]))).toEqual([
      { shape: [BATCH, 7, 6, 5], dtype: 'float32' },
    ]);
    expect(() => separableConv2dOp.inferShape(attrs, input([BATCH, 9, 8]))).toThrow(/NHWC/);
  });

  it('declares Keras-shaped weights with Glorot fans', () => {
    expect(separableConv2dOp.params!(attrs, input([BATCH, 9, 8, 3]))).toEqual([
      {
        name: 'depthwiseKernel',
        shape: [3, 3, 3, 2],
        init: { kind: 'glorotUniform', fanIn: 27, fanOut: 18 },
      },
      { name: 'pointwiseKernel', shape: [1, 1, 6, 5], init: { kind: 'glorotUniform', fanIn: 6, fanOut: 5 } },
      { name: 'bias', shape: [5], init: { kind: 'zeros' } },
    ]);
  });

  it('counts the depthwise and pointwise multiply-adds plus the bias', () => {
    // 42 positions: depthwise 6 channels * 9 taps, pointwise 6 * 5, bias on 5 channels.
    expect(separableConv2dOp.flops(attrs, [[1, 9, 8, 3]], [[1, 7, 6, 5]])).toBe(
      2 * 9 * 6 * 42 + 2 * 6 * 5 * 42 + 42 * 5,
    );
  });

  it('ties the pointwise rows to their input channel in blocks, and resizes to fewer filters', () => {
    const x = input([BATCH, 9, 8, 3]);
    const y = [{ name: 'y', ...separableConv2dOp.inferShape(attrs, x)[0]! }];
    expect(separableConv2dOp.channels!(attrs, x, y)).toEqual({
      spaces: { in: 3, out: 5 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'in' },
        { tensor: paramTensor('depthwiseKernel'), axis: 2, space: 'in' },
        { tensor: paramTensor('pointwiseKernel'), axis: 2, space: 'in', block: 2 },
        { tensor: paramTensor('pointwiseKernel'), axis: 3, space: 'out' },
        { tensor: paramTensor('bias'), axis: 0, space: 'out' },
        { tensor: outputTensor(0), axis: 3, space: 'out' },
      ],
    });
    const narrow = input([BATCH, 9, 8, 2]);
    const wanted = [{ name: 'y', dtype: 'float32' as const, shape: [BATCH, 7, 6, 4] }];
    const resized = separableConv2dOp.resize!(attrs, narrow, wanted, { in: 2, out: 4 });
    expect(separableConv2dOp.inferShape(resized, narrow)[0]!.shape).toEqual([BATCH, 7, 6, 4]);
    expect(separableConv2dOp.params!(resized, narrow).map((p) => p.shape)).toEqual([
      [3, 3, 2, 2],
      [1, 1, 4, 4],
      [4],
    ]);
  });
});
