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
import { type LayerNormAttrs, layerNormOp } from './layer-norm.js';

describeEachBackend('core.LayerNorm', () => {
  guardLeaks();

  const cases: LayerNormAttrs[] = [
    { axis: [-1], epsilon: 1e-3, center: true, scale: true },
    { axis: [1, 2], epsilon: 0.01, center: false, scale: true },
    { axis: [-2], epsilon: 1e-3, center: true, scale: false },
  ];
  for (const attrs of cases) {
    const name = `matches tfjs-layers' LayerNormalization (${JSON.stringify(attrs)})`;
    it(`${name} and has finite-difference gradients`, async () => {
      const x = seededUniform([2, 3, 4], { seed: 4 });
      const params = opParams(layerNormOp, attrs, [x]);
      const layer = tfl.layers.layerNormalization(attrs);
      tf.dispose(layer.apply(x) as tf.Tensor);
      layer.setWeights([params.gamma, params.beta].filter((t): t is tf.Tensor => t !== undefined));
      const expected = layer.apply(x) as tf.Tensor;
      const { outputs } = await runOp(layerNormOp, { attrs, inputs: [x], params });
      await expectClose(outputs[0]!, expected, { label: 'LayerNorm' });
      await checkOpGradients(layerNormOp, { attrs, inputs: [x], params });
      tf.dispose([x, expected, ...outputs, ...Object.values(params)]);
      layer.dispose();
    });
  }
});

describe('core.LayerNorm shapes, params and FLOPs', () => {
  const info = (shape: (number | string)[]) => ({ name: 'x', dtype: 'float32' as const, shape });

  it('keeps the input shape and shapes gamma and beta like the normalised axes', () => {
    const attrs = resolveAttrs(layerNormOp, { axis: [-1, 2] }, 'ln');
    const x = info([BATCH, 'time', 3, 4]);
    expect(layerNormOp.inferShape(attrs, [x])).toEqual([{ shape: [BATCH, 'time', 3, 4], dtype: 'float32' }]);
    expect(layerNormOp.params!(attrs, [x])).toEqual([
      { name: 'gamma', shape: [3, 4], init: { kind: 'ones' } },
      { name: 'beta', shape: [3, 4], init: { kind: 'zeros' } },
    ]);
    const plain = resolveAttrs(layerNormOp, { center: false, scale: false }, 'ln');
    expect(layerNormOp.params!(plain, [x])).toEqual([]);
  });

  it('rejects symbolic, repeated and out-of-range axes', () => {
    const infer = (axis: number[]) =>
      layerNormOp.inferShape(resolveAttrs(layerNormOp, { axis }, 'ln'), [info([BATCH, 'time', 4])]);
    expect(() => infer([1])).toThrow(
      /cannot normalise over the symbolic dimension 'time' of \[batch, time, 4\]/,
    );
    expect(() => infer([2, -1])).toThrow(/distinct axes/);
    expect(() => infer([3])).toThrow(/LayerNorm axis 3 is out of range/);
  });

  it('counts FLOPs per element', () => {
    const attrs = resolveAttrs(layerNormOp, {}, 'ln');
    expect(layerNormOp.flops(attrs, [[2, 4]], [[2, 4]])).toBe(8 * 7);
  });
});

describe('core.LayerNorm channels', () => {
  const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 4, 6] };

  it('ties the normalised axis to gamma and beta, all mixing, and the other axis plainly', () => {
    const attrs = resolveAttrs(layerNormOp, {}, 'norm');
    expect(layerNormOp.channels!(attrs, [x], [x])).toEqual({
      spaces: { axis1: 4, axis2: 6 },
      axes: [
        { tensor: inputTensor(0), axis: 1, space: 'axis1' },
        { tensor: outputTensor(0), axis: 1, space: 'axis1' },
        { tensor: inputTensor(0), axis: 2, space: 'axis2', mixes: true },
        { tensor: outputTensor(0), axis: 2, space: 'axis2', mixes: true },
        { tensor: paramTensor('gamma'), axis: 0, space: 'axis2', mixes: true },
        { tensor: paramTensor('beta'), axis: 0, space: 'axis2', mixes: true },
      ],
    });
  });

  it('maps each normalised axis to its own axis of the params', () => {
    const attrs = resolveAttrs(layerNormOp, { axis: [-2, -1], center: false }, 'norm');
    const params = layerNormOp.channels!(attrs, [x], [x])
      .axes.filter((a) => a.tensor.kind === 'param')
      .map((a) => [a.axis, a.space]);
    expect(params).toEqual([
      [0, 'axis1'],
      [1, 'axis2'],
    ]);
  });
});
