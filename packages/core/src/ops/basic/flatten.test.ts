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
import { flattenOp } from './flatten.js';

describeEachBackend('core.Flatten', () => {
  guardLeaks();

  it("matches tfjs-layers' Flatten and has finite-difference gradients", async () => {
    const x = seededUniform([2, 3, 2, 2]);
    const expected = tfl.layers.flatten().apply(x) as tf.Tensor;
    const { outputs } = await runOp(flattenOp, { inputs: [x] });
    await expectClose(outputs[0]!, expected, { label: 'Flatten' });
    expect(outputs[0]!.shape).toEqual([2, 12]);
    await checkOpGradients(flattenOp, { inputs: [x] });
    tf.dispose([x, expected, ...outputs]);
  });
});

describe('core.Flatten shapes and FLOPs', () => {
  const info = (shape: (number | string)[]) => ({ name: 'x', dtype: 'int32' as const, shape });

  it('keeps a symbolic batch and the dtype', () => {
    expect(flattenOp.inferShape({}, [info([BATCH, 3, 4, 5])])).toEqual([
      { shape: [BATCH, 60], dtype: 'int32' },
    ]);
    expect(flattenOp.inferShape({}, [info([BATCH])])).toEqual([{ shape: [BATCH, 1], dtype: 'int32' }]);
  });

  it('rejects a symbolic dimension past the batch and a scalar', () => {
    expect(() => flattenOp.inferShape({}, [info([BATCH, 'time', 4])])).toThrow(
      /non-batch dimensions to be numbers, got \[batch, time, 4\]/,
    );
    expect(() => flattenOp.inferShape({}, [info([])])).toThrow(/scalar/);
  });

  it('computes nothing', () => {
    expect(flattenOp.flops({}, [[2, 3, 4]], [[2, 12]])).toBe(0);
  });
});

describe('core.Flatten channels', () => {
  it("maps the input's last axis onto the flat axis with its size as the period", () => {
    const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 2, 2, 3] };
    const y = { name: 'y', dtype: 'float32' as const, shape: [BATCH, 12] };
    expect(flattenOp.channels!({}, [x], [y])).toEqual({
      spaces: { features: 3 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'features' },
        { tensor: outputTensor(0), axis: 1, space: 'features', period: 3 },
      ],
    });
  });
});
