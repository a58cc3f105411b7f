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
import { createOpContext } from '../../op-context.js';
import { avgPool2dOp } from './avg-pool2d.js';
import { layerOutput } from './spatial-test-utils.js';

interface PoolCase {
  poolSize?: number[];
  strides?: number[];
  padding?: 'same' | 'valid';
}

const CASES: PoolCase[] = [
  {},
  // 'same' with strides 2: 1 + 1 padded rows, 0 + 1 columns; border windows average fewer positions.
  { poolSize: [3, 3], strides: [2, 2], padding: 'same' },
  { poolSize: [2, 3], strides: [1, 2] },
  { poolSize: [3], padding: 'same' },
];

/** tfjs-layers takes a one-value size as a number. */
const pair = (values: number[] | undefined) =>
  values?.length === 1 ? values[0]! : (values as [number, number] | undefined);

describeEachBackend('core.AvgPool2D', () => {
  guardLeaks();

  for (const attrs of CASES) {
    it(`matches tfjs-layers' AveragePooling2D (${JSON.stringify(attrs)})`, async () => {
      const x = seededUniform([2, 7, 8, 3], { seed: 3 });
      const layer = tfl.layers.averagePooling2d({
        poolSize: pair(attrs.poolSize) ?? 2,
        strides: pair(attrs.strides) ?? pair(attrs.poolSize),
        padding: attrs.padding ?? 'valid',
      });
      const expected = layerOutput(layer, [], x);
      const { outputs } = await runOp(avgPool2dOp, { attrs: { ...attrs }, inputs: [x] });
      await expectClose(outputs[0]!, expected, { label: 'AvgPool2D' });
      tf.dispose([x, expected, ...outputs]);
    });
  }

  it('has finite-difference gradients (same padding, strides 2)', async () => {
    const x = seededUniform([2, 5, 6, 2], { seed: 4 });
    await checkOpGradients(avgPool2dOp, {
      attrs: { poolSize: [3, 3], strides: [2, 2], padding: 'same' },
      inputs: [x],
    });
    x.dispose();
  });

  it("sends border windows' gradients only to positions inside the image (tfjs's AvgPoolGrad does not)", async () => {
    // Width 3, windows of 2 with stride 2 and 'same' padding: {0, 1} and {2} (one padded column).
    const x = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
    const attrs = { poolSize: [1, 2], padding: 'same' };
    const { outputs } = await runOp(avgPool2dOp, { attrs, inputs: [x] });
    await expectClose(outputs[0]!, [1.5, 3]);
    const grad = tf.grad((input: tf.Tensor) => {
      const { context } = createOpContext({
        node: { name: 'p', op: avgPool2dOp.type, inputs: [], outputs: [], attrs },
        attrs: resolveAttrs(avgPool2dOp, attrs, 'p'),
        params: {},
        state: {},
        training: true,
        options: {},
        rows: { batchSize: 1, indices: Int32Array.of(0) },
        seed: 1,
      });
      return tf.sum((avgPool2dOp.forward(context, [input]) as tf.Tensor[])[0]!);
    })(x);
    await expectClose(grad, [0.5, 0.5, 1]);
    tf.dispose([x, grad, ...outputs]);
  });
});

describe('core.AvgPool2D shapes and FLOPs', () => {
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('strides default to the pool size; a symbolic batch stays symbolic', () => {
    const attrs = resolveAttrs(avgPool2dOp, { poolSize: [3, 2] }, 'p');
    expect(avgPool2dOp.inferShape(attrs, input([BATCH, 9, 8, 4]))).toEqual([
      { shape: [BATCH, 3, 4, 4], dtype: 'float32' },
    ]);
  });

  it('rejects a non-NHWC input and a pool larger than a valid input', () => {
    const attrs = resolveAttrs(avgPool2dOp, {}, 'p');
    expect(() => avgPool2dOp.inferShape(attrs, input([BATCH, 9, 8]))).toThrow(/NHWC/);
    const big = resolveAttrs(avgPool2dOp, { poolSize: [5, 5] }, 'p');
    expect(() => avgPool2dOp.inferShape(big, input([BATCH, 4, 8, 1]))).toThrow(/smaller than the window/);
  });

  it('counts one add per window element and one division per output', () => {
    const attrs = resolveAttrs(avgPool2dOp, { poolSize: [2, 3] }, 'p');
    expect(avgPool2dOp.flops(attrs, [[2, 4, 6, 3]], [[2, 2, 2, 3]])).toBe(24 * 7);
  });

  it('ties the input channels to the output channels, the spatial axes unmapped', () => {
    const x = input([BATCH, 8, 8, 4]);
    const y = [{ name: 'y', ...avgPool2dOp.inferShape(resolveAttrs(avgPool2dOp, {}, 'p'), x)[0]! }];
    expect(avgPool2dOp.channels!(resolveAttrs(avgPool2dOp, {}, 'p'), x, y)).toEqual({
      spaces: { c: 4 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'c' },
        { tensor: outputTensor(0), axis: 3, space: 'c' },
      ],
    });
  });
});
