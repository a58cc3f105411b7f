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
import { denseOp } from './dense.js';

describeEachBackend('core.Dense', () => {
  guardLeaks();

  for (const [activation, useBias] of [
    ['tanh', true],
    ['gelu', false],
  ] as const) {
    it(`matches tfjs-layers' Dense on a rank-3 input (${activation}, useBias ${useBias})`, async () => {
      const x = seededUniform([2, 3, 4], { seed: 3 });
      const attrs = { units: 5, activation, useBias };
      const params = opParams(denseOp, attrs, [x]);
      const layer = tfl.layers.dense({ units: 5, activation, useBias });
      tf.dispose(layer.apply(x) as tf.Tensor);
      layer.setWeights(useBias ? [params.kernel!, params.bias!] : [params.kernel!]);
      const expected = layer.apply(x) as tf.Tensor;
      const { outputs } = await runOp(denseOp, { attrs, inputs: [x], params });
      await expectClose(outputs[0]!, expected, { label: 'Dense' });
      tf.dispose([x, expected, ...outputs, ...Object.values(params)]);
      layer.dispose();
    });
  }

  it('has finite-difference gradients for its input, kernel and bias', async () => {
    // Inputs well away from relu's kink at 0 for the sampled elements.
    const x = seededUniform([3, 4], { seed: 5, min: 0.2, max: 1 });
    await checkOpGradients(denseOp, { attrs: { units: 3, activation: 'swish' }, inputs: [x] });
    x.dispose();
  });
});

describe('core.Dense shapes and FLOPs', () => {
  const attrs = resolveAttrs(denseOp, { units: 7, activation: 'relu' }, 'dense');

  it('keeps a symbolic batch and every leading axis', () => {
    const [out] = denseOp.inferShape(attrs, [{ name: 'x', dtype: 'float32', shape: [BATCH, 'time', 4] }]);
    expect(out).toEqual({ shape: [BATCH, 'time', 7], dtype: 'float32' });
    const specs = denseOp.params!(attrs, [{ name: 'x', dtype: 'float32', shape: [BATCH, 4] }]);
    expect(specs).toEqual([
      { name: 'kernel', shape: [4, 7], init: { kind: 'glorotUniform', fanIn: 4, fanOut: 7 } },
      { name: 'bias', shape: [7], init: { kind: 'zeros' } },
    ]);
  });

  it('declares no bias without useBias', () => {
    const noBias = resolveAttrs(denseOp, { units: 2, useBias: false }, 'dense');
    const names = denseOp.params!(noBias, [{ name: 'x', dtype: 'float32', shape: [BATCH, 3] }]).map(
      (p) => p.name,
    );
    expect(names).toEqual(['kernel']);
  });

  it('rejects an input whose last axis is symbolic, a vector, or ints', () => {
    const bad =
      (shape: (number | string)[], dtype: 'float32' | 'int32' = 'float32') =>
      () =>
        denseOp.inferShape(attrs, [{ name: 'x', dtype, shape }]);
    expect(bad([BATCH, 'time'])).toThrow(
      /Dense needs an input of rank >= 2 whose last dimension is a number/,
    );
    expect(bad([BATCH])).toThrow(/rank >= 2/);
    expect(bad([BATCH, 3], 'int32')).toThrow(/float32/);
  });

  it('counts 2 FLOPs per multiply-add plus the bias and activation', () => {
    // 6 rows x 7 units x (2*4 + 1 bias + 1 relu)
    expect(denseOp.flops(attrs, [[2, 3, 4]], [[2, 3, 7]])).toBe(6 * 7 * 10);
  });
});

describe('core.Dense channels', () => {
  const attrs = resolveAttrs(denseOp, { units: 5 }, 'dense');
  const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 'time', 4] };
  const y = { name: 'y', dtype: 'float32' as const, shape: [BATCH, 'time', 5] };

  it('ties the input features to kernel axis 0 and the units to kernel axis 1, the bias and the output', () => {
    expect(denseOp.channels!(attrs, [x], [y])).toEqual({
      spaces: { in: 4, out: 5 },
      axes: [
        { tensor: inputTensor(0), axis: 2, space: 'in' },
        { tensor: paramTensor('kernel'), axis: 0, space: 'in' },
        { tensor: paramTensor('kernel'), axis: 1, space: 'out' },
        { tensor: paramTensor('bias'), axis: 0, space: 'out' },
        { tensor: outputTensor(0), axis: 2, space: 'out' },
      ],
    });
  });

  it('marks the units as mixing under a softmax', () => {
    const softmax = resolveAttrs(denseOp, { units: 5, activation: 'softmax', useBias: false }, 'dense');
    const { axes } = denseOp.channels!(softmax, [x], [y]);
    expect(axes.filter((a) => a.mixes).map((a) => a.space)).toEqual(['out', 'out']);
  });

  it('resizes units so that the output and the params shrink', () => {
    const smaller = { ...x, shape: [BATCH, 'time', 3] };
    const resized = denseOp.resize!(attrs, [smaller], [{ ...y, shape: [BATCH, 'time', 2] }], {
      in: 3,
      out: 2,
    });
    expect(resized).toEqual({ ...attrs, units: 2 });
    expect(denseOp.inferShape(resized, [smaller])[0]!.shape).toEqual([BATCH, 'time', 2]);
    expect(denseOp.params!(resized, [smaller]).map((p) => p.shape)).toEqual([[3, 2], [2]]);
  });
});
