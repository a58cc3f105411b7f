import { activateBackend, describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import type { BackendName } from '../../backend.js';
import { linear, matMulFastGrad } from './linear.js';

type Fn = (inputs: tf.Tensor[]) => tf.Tensor;

/** Value and gradients of `sum(f(inputs) * weights)`, with seeded inputs and weights. */
function objectiveAndGrads(shapes: number[][], outShape: number[], f: Fn): tf.Tensor[] {
  const inputs = shapes.map((shape, i) => seededUniform(shape, { seed: 10 + i }));
  const weights = seededUniform(outShape, { seed: 99 });
  const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(xs), weights)))(inputs);
  tf.dispose([...inputs, weights]);
  return [value, ...grads];
}

/** {@link objectiveAndGrads} on the cpu backend, read back to arrays: the reference. */
async function onCpu(
  backend: BackendName,
  shapes: number[][],
  outShape: number[],
  f: Fn,
): Promise<Float32Array[]> {
  await activateBackend('cpu');
  const tensors = objectiveAndGrads(shapes, outShape, f);
  const arrays = await Promise.all(tensors.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(tensors);
  await activateBackend(backend);
  return arrays;
}

describeEachBackend('matMulFastGrad and linear', (backend) => {
  guardLeaks();

  it("matMulFastGrad's value and gradients equal tfjs's native matMul on cpu", async () => {
    const shapes = [
      [3, 4],
      [4, 5],
    ];
    const native = ([x, w]: tf.Tensor[]) => tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D);
    const expected = await onCpu(backend, shapes, [3, 5], native);
    const fast = ([x, w]: tf.Tensor[]) => matMulFastGrad(x as tf.Tensor2D, w as tf.Tensor2D);
    const actual = objectiveAndGrads(shapes, [3, 5], fast);
    for (const [i, name] of ['value', 'dx', 'dw'].entries()) {
      await expectClose(actual[i]!, expected[i]!, { label: name });
    }
    tf.dispose(actual);
  });

  it("linear's value and gradients on a rank-3 input equal tfjs's native matMul and add on cpu", async () => {
    const shapes = [[2, 3, 4], [4, 5], [5]];
    const native = ([x, w, b]: tf.Tensor[]) =>
      tf.add(tf.reshape(tf.matMul(tf.reshape(x!, [6, 4]) as tf.Tensor2D, w as tf.Tensor2D), [2, 3, 5]), b!);
    const expected = await onCpu(backend, shapes, [2, 3, 5], native);
    const actual = objectiveAndGrads(shapes, [2, 3, 5], ([x, w, b]) => linear(x!, w as tf.Tensor2D, b));
    for (const [i, name] of ['value', 'dx', 'dw', 'db'].entries()) {
      await expectClose(actual[i]!, expected[i]!, { label: name });
    }
    expect(actual[1]!.shape).toEqual([2, 3, 4]);
    tf.dispose(actual);
  });

  it('linear leaves no tensor behind in inference and handles an empty batch', async () => {
    const x = tf.zeros([0, 3, 4]);
    const w = seededUniform([4, 2]) as tf.Tensor2D;
    const b = tf.ones([2]);
    const y = linear(x, w, b);
    expect(y.shape).toEqual([0, 3, 2]);
    tf.dispose([x, w, b, y]);
  });
});
