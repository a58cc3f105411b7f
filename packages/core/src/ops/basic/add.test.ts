import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import { BATCH } from '../../ir.js';
import { addOp } from './add.js';

/** Elementwise sum with numpy broadcasting, by index arithmetic on plain arrays. */
function referenceSum(arrays: Float32Array[], shapes: number[][], outShape: number[]): Float32Array {
  const size = outShape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(size);
  for (let flat = 0; flat < size; flat++) {
    const index: number[] = [];
    for (let axis = outShape.length - 1, rest = flat; axis >= 0; axis--) {
      index[axis] = rest % outShape[axis]!;
      rest = Math.floor(rest / outShape[axis]!);
    }
    arrays.forEach((values, k) => {
      const shape = shapes[k]!;
      let at = 0;
      shape.forEach((d, axis) => {
        at = at * d + (d === 1 ? 0 : index[axis + outShape.length - shape.length]!);
      });
      out[flat]! += values[at]!;
    });
  }
  return out;
}

describeEachBackend('core.Add', () => {
  guardLeaks();
  // The harness names every input's first axis 'batch', so all inputs keep it.
  const shapes = [
    [2, 3, 4],
    [2, 3, 1],
    [2, 1, 4],
  ];

  it('sums 3 inputs with numpy broadcasting', async () => {
    const inputs = shapes.map((shape, i) => seededUniform(shape, { seed: i + 1 }));
    const arrays = await Promise.all(inputs.map(async (t) => (await t.data()) as Float32Array));
    const { outputs } = await runOp(addOp, { inputs });
    await expectClose(outputs[0]!, referenceSum(arrays, shapes, [2, 3, 4]), { label: 'Add' });
    tf.dispose([...inputs, ...outputs]);
  });

  it('adds int32 inputs exactly', async () => {
    const a = tf.tensor([1, 2, 3, 4], [2, 2], 'int32');
    const b = tf.tensor([10, 20], [2, 1], 'int32');
    const { outputs } = await runOp(addOp, { inputs: [a, b] });
    expect(outputs[0]!.dtype).toBe('int32');
    expect(Array.from(await outputs[0]!.data())).toEqual([11, 12, 23, 24]);
    tf.dispose([a, b, ...outputs]);
  });

  it('has finite-difference gradients for every broadcast input', async () => {
    const inputs = shapes.map((shape, i) => seededUniform(shape, { seed: i + 1 }));
    await checkOpGradients(addOp, { inputs });
    tf.dispose(inputs);
  });
});

describe('core.Add shapes and FLOPs', () => {
  const info = (shape: (number | string)[], dtype: 'float32' | 'int32' = 'float32') => ({
    name: 'x',
    dtype,
    shape,
  });

  it('broadcasts symbolic dimensions: equal names match, 1 stretches', () => {
    const [out] = addOp.inferShape({}, [info([BATCH, 'time', 1]), info([1, 8]), info(['time', 8])]);
    expect(out).toEqual({ shape: [BATCH, 'time', 8], dtype: 'float32' });
  });

  it('rejects shapes that do not broadcast and mixed dtypes', () => {
    expect(() => addOp.inferShape({}, [info([BATCH, 3]), info([BATCH, 4])])).toThrow(
      /Add: shapes \[batch, 3\], \[batch, 4\] do not broadcast: 3 against 4/,
    );
    expect(() => addOp.inferShape({}, [info([BATCH, 3]), info([5, 3])])).toThrow(/batch against 5/);
    expect(() => addOp.inferShape({}, [info([BATCH, 3]), info([BATCH, 3], 'int32')])).toThrow(
      /one dtype, got float32 and int32/,
    );
  });

  it('counts one FLOP per output element per extra input', () => {
    expect(addOp.flops({}, [[2, 3], [3], [2, 3]], [[2, 3]])).toBe(12);
  });
});

describe('core.Add channels', () => {
  it('ties the inputs to the output, a broadcast vector on its own axis 0 and a size-1 axis nowhere', () => {
    const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 3, 4] };
    const gate = { name: 'gate', dtype: 'float32' as const, shape: [BATCH, 3, 1] };
    const bias = { name: 'bias', dtype: 'float32' as const, shape: [4] };
    expect(addOp.channels!({}, [x, gate, bias], [x])).toEqual({
      spaces: { axis1: 3, axis2: 4 },
      axes: [
        { tensor: outputTensor(0), axis: 1, space: 'axis1' },
        { tensor: inputTensor(0), axis: 1, space: 'axis1' },
        { tensor: inputTensor(1), axis: 1, space: 'axis1' },
        { tensor: outputTensor(0), axis: 2, space: 'axis2' },
        { tensor: inputTensor(0), axis: 2, space: 'axis2' },
        { tensor: inputTensor(2), axis: 0, space: 'axis2' },
      ],
    });
  });
});
