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
import { BATCH } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { maxPool2dOp } from './max-pool2d.js';
import { distinctValues, layerOutput } from './spatial-test-utils.js';

interface PoolCase {
  poolSize?: number[];
  strides?: number[];
  padding?: 'same' | 'valid';
}

const CASES: PoolCase[] = [
  {},
  // 'same' with strides 2: 1 + 1 padded rows, 0 + 1 columns (asymmetric); border windows partly outside.
  { poolSize: [3, 3], strides: [2, 2], padding: 'same' },
  { poolSize: [2, 3], strides: [1, 2] },
  { poolSize: [3], padding: 'same' },
];

/** tfjs-layers takes a one-value size as a number. */
const pair = (values: number[] | undefined) =>
  values?.length === 1 ? values[0]! : (values as [number, number] | undefined);

describeEachBackend('core.MaxPool2D', () => {
  guardLeaks();

  for (const attrs of CASES) {
    it(`matches tfjs-layers' MaxPooling2D (${JSON.stringify(attrs)})`, async () => {
      const x = seededUniform([2, 7, 8, 3], { seed: 3 });
      const layer = tfl.layers.maxPooling2d({
        poolSize: pair(attrs.poolSize) ?? 2,
        strides: pair(attrs.strides) ?? pair(attrs.poolSize),
        padding: attrs.padding ?? 'valid',
      });
      const expected = layerOutput(layer, [], x);
      const { outputs } = await runOp(maxPool2dOp, { attrs: { ...attrs }, inputs: [x] });
      await expectClose(outputs[0]!, expected, { label: 'MaxPool2D' });
      tf.dispose([x, expected, ...outputs]);
    });
  }

  it('has finite-difference gradients (values without near-ties, same padding, strides 2)', async () => {
    const x = distinctValues([2, 5, 6, 2]);
    await checkOpGradients(maxPool2dOp, {
      attrs: { poolSize: [3, 3], strides: [2, 2], padding: 'same' },
      inputs: [x],
    });
    x.dispose();
  });
});

describe('core.MaxPool2D shapes and FLOPs', () => {
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('strides default to the pool size; a symbolic batch stays symbolic', () => {
    const attrs = resolveAttrs(maxPool2dOp, { poolSize: [3, 2] }, 'p');
    expect(maxPool2dOp.inferShape(attrs, input([BATCH, 9, 8, 4]))).toEqual([
      { shape: [BATCH, 3, 4, 4], dtype: 'float32' },
    ]);
  });

  it('rejects a non-NHWC input and a pool larger than a valid input', () => {
    const attrs = resolveAttrs(maxPool2dOp, {}, 'p');
    expect(() => maxPool2dOp.inferShape(attrs, input([BATCH, 9, 8]))).toThrow(/NHWC/);
    const big = resolveAttrs(maxPool2dOp, { poolSize: [5, 5] }, 'p');
    expect(() => maxPool2dOp.inferShape(big, input([BATCH, 4, 8, 1]))).toThrow(/smaller than the window/);
  });

  it('counts one comparison per window element per output', () => {
    const attrs = resolveAttrs(maxPool2dOp, { poolSize: [2, 3] }, 'p');
    expect(maxPool2dOp.flops(attrs, [[2, 4, 6, 3]], [[2, 2, 2, 3]])).toBe(24 * 6);
  });

  it('ties the input channels to the output channels, the spatial axes unmapped', () => {
    const x = input([BATCH, 8, 8, 4]);
    const y = [{ name: 'y', ...maxPool2dOp.inferShape(resolveAttrs(maxPool2dOp, {}, 'p'), x)[0]! }];
    expect(maxPool2dOp.channels!(resolveAttrs(maxPool2dOp, {}, 'p'), x, y)).toEqual({
      spaces: { c: 4 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'c' },
        { tensor: outputTensor(0), axis: 3, space: 'c' },
      ],
    });
  });
});
