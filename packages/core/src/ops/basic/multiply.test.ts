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
import { multiplyOp } from './multiply.js';

/** Elementwise product with numpy broadcasting, by index arithmetic on plain arrays. */
function referenceProduct(arrays: Float32Array[], shapes: number[][], outShape: number[]): Float32Array {
  const size = outShape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(size).fill(1);
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
      out[flat]! *= values[at]!;
    });
  }
  return out;
}

describeEachBackend('core.Multiply', () => {
  guardLeaks();
  // The harness names every input's first axis 'batch', so all inputs keep it.
  const shapes = [
    [2, 3, 4],
    [2, 3, 1],
    [2, 1, 4],
  ];

  it('multiplies 3 inputs with numpy broadcasting', async () => {
    const inputs = shapes.map((shape, i) => seededUniform(shape, { seed: i + 1 }));
    const arrays = await Promise.all(inputs.map(async (t) => (await t.data()) as Float32Array));
    const { outputs } = await runOp(multiplyOp, { inputs });
    await expectClose(outputs[0]!, referenceProduct(arrays, shapes, [2, 3, 4]), { label: 'Multiply' });
    tf.dispose([...inputs, ...outputs]);
  });

  it('multiplies int32 inputs exactly', async () => {
    const a = tf.tensor([1, 2, 3, 4], [2, 2], 'int32');
    const b = tf.tensor([10, 20], [2, 1], 'int32');
    const { outputs } = await runOp(multiplyOp, { inputs: [a, b] });
    expect(outputs[0]!.dtype).toBe('int32');
    expect(Array.from(await outputs[0]!.data())).toEqual([10, 20, 60, 80]);
    tf.dispose([a, b, ...outputs]);
  });

  it('has finite-difference gradients for every broadcast input', async () => {
    const inputs = shapes.map((shape, i) => seededUniform(shape, { seed: i + 1 }));
    await checkOpGradients(multiplyOp, { inputs });
    tf.dispose(inputs);
  });
});

describe('core.Multiply shapes and FLOPs', () => {
  const info = (shape: (number | string)[], dtype: 'float32' | 'int32' = 'float32') => ({
    name: 'x',
    dtype,
    shape,
  });

  it('broadcasts symbolic dimensions: equal names match, 1 stretches', () => {
    const [out] = multiplyOp.inferShape({}, [info([BATCH, 'time', 1]), info([1, 8]), info(['time', 8])]);
    expect(out).toEqual({ shape: [BATCH, 'time', 8], dtype: 'float32' });
  });

  it('rejects shapes that do not broadcast and mixed dtypes', () => {
    expect(() => multiplyOp.inferShape({}, [info([BATCH, 3]), info([BATCH, 4])])).toThrow(
      /Multiply: shapes \[batch, 3\], \[batch, 4\] do not broadcast: 3 against 4/,
    );
    expect(() => multiplyOp.inferShape({}, [info([BATCH, 3]), info([5, 3])])).toThrow(/batch against 5/);
    expect(() => multiplyOp.inferShape({}, [info([BATCH, 3]), info([BATCH, 3], 'int32')])).toThrow(
      /one dtype, got float32 and int32/,
    );
  });

  it('counts one FLOP per output element per extra input', () => {
    expect(multiplyOp.flops({}, [[2, 3], [3], [2, 3]], [[2, 3]])).toBe(12);
  });
});

describe('core.Multiply channels', () => {
  it('ties the inputs to the output, a broadcast vector on its own axis 0 and a size-1 axis nowhere', () => {
    const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 3, 4] };
    const gate = { name: 'gate', dtype: 'float32' as const, shape: [BATCH, 3, 1] };
    const bias = { name: 'bias', dtype: 'float32' as const, shape: [4] };
    expect(multiplyOp.channels!({}, [x, gate, bias], [x])).toEqual({
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
