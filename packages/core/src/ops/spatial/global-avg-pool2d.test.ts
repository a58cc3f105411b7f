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
import { globalAvgPool2dOp } from './global-avg-pool2d.js';
import { layerOutput } from './spatial-test-utils.js';

describeEachBackend('core.GlobalAvgPool2D', () => {
  guardLeaks();

  for (const keepDims of [false, true]) {
    it(`matches tfjs-layers' GlobalAveragePooling2D (keepDims ${keepDims})`, async () => {
      const x = seededUniform([2, 5, 4, 3], { seed: 3 });
      const pooled = layerOutput(tfl.layers.globalAveragePooling2d({}), [], x);
      const expected = keepDims ? tf.reshape(pooled, [2, 1, 1, 3]) : pooled;
      const { outputs } = await runOp(globalAvgPool2dOp, { attrs: { keepDims }, inputs: [x] });
      await expectClose(outputs[0]!, expected, { label: 'GlobalAvgPool2D' });
      tf.dispose([x, pooled, expected, ...outputs]);
    });
  }

  it('has finite-difference gradients', async () => {
    const x = seededUniform([2, 3, 4, 2], { seed: 4 });
    await checkOpGradients(globalAvgPool2dOp, { inputs: [x] });
    x.dispose();
  });
});

describe('core.GlobalAvgPool2D shapes and FLOPs', () => {
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('gives [batch, channels], or [batch, 1, 1, channels] with keepDims', () => {
    const flat = resolveAttrs(globalAvgPool2dOp, {}, 'g');
    expect(globalAvgPool2dOp.inferShape(flat, input([BATCH, 'h', 'w', 6]))).toEqual([
      { shape: [BATCH, 6], dtype: 'float32' },
    ]);
    const kept = resolveAttrs(globalAvgPool2dOp, { keepDims: true }, 'g');
    expect(globalAvgPool2dOp.inferShape(kept, input([BATCH, 4, 4, 6]))[0]!.shape).toEqual([BATCH, 1, 1, 6]);
    expect(() => globalAvgPool2dOp.inferShape(flat, input([BATCH, 6]))).toThrow(/NHWC/);
  });

  it('counts one add per input element', () => {
    expect(globalAvgPool2dOp.flops(resolveAttrs(globalAvgPool2dOp, {}, 'g'), [[2, 3, 4, 5]], [[2, 5]])).toBe(
      120,
    );
  });

  it("ties the input channels to the output's last axis, with or without keepDims", () => {
    const x = input([BATCH, 4, 4, 6]);
    for (const [keepDims, axis] of [
      [false, 1],
      [true, 3],
    ] as const) {
      const attrs = resolveAttrs(globalAvgPool2dOp, { keepDims }, 'g');
      const y = [{ name: 'y', ...globalAvgPool2dOp.inferShape(attrs, x)[0]! }];
      expect(globalAvgPool2dOp.channels!(attrs, x, y)).toEqual({
        spaces: { c: 6 },
        axes: [
          { tensor: inputTensor(0), axis: 3, space: 'c' },
          { tensor: outputTensor(0), axis, space: 'c' },
        ],
      });
    }
  });
});
