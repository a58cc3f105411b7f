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
import { concatOp } from './concat.js';

describeEachBackend('core.Concat', () => {
  guardLeaks();

  for (const [axis, shapes] of [
    [
      -1,
      [
        [2, 3, 4],
        [2, 3, 2],
        [2, 3, 1],
      ],
    ],
    [
      1,
      [
        [2, 1, 4],
        [2, 3, 4],
      ],
    ],
  ] as const) {
    it(`matches tfjs-layers' Concatenate on axis ${axis} and has finite-difference gradients`, async () => {
      const inputs = shapes.map((shape, i) => seededUniform([...shape], { seed: i + 1 }));
      const layer = tfl.layers.concatenate({ axis });
      const expected = layer.apply(inputs) as tf.Tensor;
      const { outputs } = await runOp(concatOp, { attrs: { axis }, inputs });
      await expectClose(outputs[0]!, expected, { label: 'Concat' });
      await checkOpGradients(concatOp, { attrs: { axis }, inputs });
      tf.dispose([...inputs, expected, ...outputs]);
    });
  }
});

describe('core.Concat shapes and FLOPs', () => {
  const info = (shape: (number | string)[]) => ({ name: 'x', dtype: 'float32' as const, shape });
  const lastAxis = resolveAttrs(concatOp, {}, 'concat');

  it('sums the joined axis and keeps symbolic dimensions elsewhere', () => {
    const [out] = concatOp.inferShape(lastAxis, [info([BATCH, 'time', 3]), info([BATCH, 'time', 5])]);
    expect(out).toEqual({ shape: [BATCH, 'time', 8], dtype: 'float32' });
  });

  it('rejects mismatched other axes, a symbolic joined axis and an axis outside the inputs', () => {
    expect(() => concatOp.inferShape(lastAxis, [info([BATCH, 2, 3]), info([BATCH, 4, 3])])).toThrow(
      /Concat on axis -1: shapes \[batch, 2, 3\], \[batch, 4, 3\] differ off that axis/,
    );
    const batchAxis = resolveAttrs(concatOp, { axis: 0 }, 'concat');
    expect(() => concatOp.inferShape(batchAxis, [info([BATCH, 3]), info([BATCH, 3])])).toThrow(
      /cannot join along the symbolic dimension 'batch'/,
    );
    const third = resolveAttrs(concatOp, { axis: 2 }, 'concat');
    expect(() => concatOp.inferShape(third, [info([BATCH, 3]), info([BATCH, 3])])).toThrow(/out of range/);
  });

  it('moves data without arithmetic', () => {
    expect(
      concatOp.flops(
        lastAxis,
        [
          [2, 3],
          [2, 3],
        ],
        [[2, 6]],
      ),
    ).toBe(0);
  });
});

describe('core.Concat channels', () => {
  const a = { name: 'a', dtype: 'float32' as const, shape: [BATCH, 2, 3] };
  const b = { name: 'b', dtype: 'float32' as const, shape: [BATCH, 2, 5] };

  it('places each input at its offset on the joined axis and ties the other axes', () => {
    const attrs = resolveAttrs(concatOp, {}, 'concat');
    const y = { name: 'y', dtype: 'float32' as const, shape: [BATCH, 2, 8] };
    expect(concatOp.channels!(attrs, [a, b], [y])).toEqual({
      spaces: { axis1: 2, axis2: 8 },
      axes: [
        { tensor: outputTensor(0), axis: 1, space: 'axis1' },
        { tensor: inputTensor(0), axis: 1, space: 'axis1' },
        { tensor: inputTensor(1), axis: 1, space: 'axis1' },
        { tensor: outputTensor(0), axis: 2, space: 'axis2' },
        { tensor: inputTensor(0), axis: 2, space: 'axis2', offset: 0 },
        { tensor: inputTensor(1), axis: 2, space: 'axis2', offset: 3 },
      ],
    });
  });

  it('skips a symbolic axis', () => {
    const attrs = resolveAttrs(concatOp, { axis: 1 }, 'concat');
    const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 2, 'time'] };
    const y = { name: 'y', dtype: 'float32' as const, shape: [BATCH, 4, 'time'] };
    expect(concatOp.channels!(attrs, [x, x], [y]).spaces).toEqual({ axis1: 4 });
  });
});
