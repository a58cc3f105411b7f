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
import { layerOutput } from './spatial-test-utils.js';
import { zeroPadding2dOp } from './zero-padding2d.js';

const CASES: { padding?: number[]; keras: [[number, number], [number, number]] }[] = [
  {
    keras: [
      [1, 1],
      [1, 1],
    ],
  },
  {
    padding: [2],
    keras: [
      [2, 2],
      [2, 2],
    ],
  },
  {
    padding: [1, 3],
    keras: [
      [1, 1],
      [3, 3],
    ],
  },
  {
    padding: [0, 2, 3, 1],
    keras: [
      [0, 2],
      [3, 1],
    ],
  },
];

describeEachBackend('core.ZeroPadding2D', () => {
  guardLeaks();

  for (const { padding, keras } of CASES) {
    it(`matches tfjs-layers' ZeroPadding2D (padding ${JSON.stringify(padding ?? 'default')})`, async () => {
      const x = seededUniform([2, 3, 4, 2], { seed: 3 });
      const expected = layerOutput(tfl.layers.zeroPadding2d({ padding: keras }), [], x);
      const attrs: Record<string, number[]> = padding ? { padding } : {};
      const { outputs } = await runOp(zeroPadding2dOp, { attrs, inputs: [x] });
      await expectClose(outputs[0]!, expected, { label: 'ZeroPadding2D' });
      tf.dispose([x, expected, ...outputs]);
    });
  }

  it('has finite-difference gradients', async () => {
    const x = seededUniform([1, 3, 2, 2], { seed: 4 });
    await checkOpGradients(zeroPadding2dOp, { attrs: { padding: [1, 0, 2, 1] }, inputs: [x] });
    x.dispose();
  });
});

describe('core.ZeroPadding2D shapes and FLOPs', () => {
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];
  const attrs = resolveAttrs(zeroPadding2dOp, { padding: [1, 2, 0, 0] }, 'z');

  it('grows the spatial sizes, naming symbolic ones', () => {
    expect(zeroPadding2dOp.inferShape(attrs, input([BATCH, 5, 'w', 3]))).toEqual([
      { shape: [BATCH, 8, 'w', 3], dtype: 'float32' },
    ]);
    expect(zeroPadding2dOp.inferShape(attrs, input([BATCH, 'h', 4, 3]))[0]!.shape).toEqual([
      BATCH,
      'h+3',
      4,
      3,
    ]);
  });

  it('rejects a non-NHWC input and a padding of 3 values', () => {
    expect(() => zeroPadding2dOp.inferShape(attrs, input([BATCH, 5, 3]))).toThrow(/NHWC/);
    const bad = resolveAttrs(zeroPadding2dOp, { padding: [1, 2, 3] }, 'z');
    expect(() => zeroPadding2dOp.inferShape(bad, input([BATCH, 5, 5, 3]))).toThrow(/1, 2 or 4 values/);
  });

  it('counts no FLOPs', () => {
    expect(zeroPadding2dOp.flops(attrs, [[1, 5, 4, 3]], [[1, 8, 4, 3]])).toBe(0);
  });

  it('ties the input channels to the output channels, the spatial axes unmapped', () => {
    const x = input([BATCH, 5, 4, 4]);
    const y = [{ name: 'y', ...zeroPadding2dOp.inferShape(attrs, x)[0]! }];
    expect(zeroPadding2dOp.channels!(attrs, x, y)).toEqual({
      spaces: { c: 4 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'c' },
        { tensor: outputTensor(0), axis: 3, space: 'c' },
      ],
    });
  });
});
