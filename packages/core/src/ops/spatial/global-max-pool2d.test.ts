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
import { globalMaxPool2dOp } from './global-max-pool2d.js';
import { distinctValues, layerOutput } from './spatial-test-utils.js';

describeEachBackend('core.GlobalMaxPool2D', () => {
  guardLeaks();

  for (const keepDims of [false, true]) {
    it(`matches tfjs-layers' GlobalMaxPooling2D (keepDims ${keepDims})`, async () => {
      const x = seededUniform([2, 5, 4, 3], { seed: 3 });
      const pooled = layerOutput(tfl.layers.globalMaxPooling2d({}), [], x);
      const expected = keepDims ? tf.reshape(pooled, [2, 1, 1, 3]) : pooled;
      const { outputs } = await runOp(globalMaxPool2dOp, { attrs: { keepDims }, inputs: [x] });
      await expectClose(outputs[0]!, expected, { label: 'GlobalMaxPool2D' });
      tf.dispose([x, pooled, expected, ...outputs]);
    });
  }

  it('has finite-difference gradients (values without near-ties)', async () => {
    const x = distinctValues([2, 3, 4, 2]);
    await checkOpGradients(globalMaxPool2dOp, { inputs: [x] });
    x.dispose();
  });
});

describe('core.GlobalMaxPool2D shapes and FLOPs', () => {
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('gives [batch, channels], or [batch, 1, 1, channels] with keepDims', () => {
    const flat = resolveAttrs(globalMaxPool2dOp, {}, 'g');
    expect(globalMaxPool2dOp.inferShape(flat, input([BATCH, 'h', 'w', 6]))).toEqual([
      { shape: [BATCH, 6], dtype: 'float32' },
    ]);
    const kept = resolveAttrs(globalMaxPool2dOp, { keepDims: true }, 'g');
    expect(globalMaxPool2dOp.inferShape(kept, input([BATCH, 4, 4, 6]))[0]!.shape).toEqual([BATCH, 1, 1, 6]);
    expect(() => globalMaxPool2dOp.inferShape(flat, input([BATCH, 6]))).toThrow(/NHWC/);
  });

  it('counts one comparison per input element', () => {
    expect(globalMaxPool2dOp.flops(resolveAttrs(globalMaxPool2dOp, {}, 'g'), [[2, 3, 4, 5]], [[2, 5]])).toBe(
      120,
    );
  });

  it("ties the input channels to the output's last axis, with or without keepDims", () => {
    const x = input([BATCH, 4, 4, 6]);
    for (const [keepDims, axis] of [
      [false, 1],
      [true, 3],
    ] as const) {
      const attrs = resolveAttrs(globalMaxPool2dOp, { keepDims }, 'g');
      const y = [{ name: 'y', ...globalMaxPool2dOp.inferShape(attrs, x)[0]! }];
      expect(globalMaxPool2dOp.channels!(attrs, x, y)).toEqual({
        spaces: { c: 6 },
        axes: [
          { tensor: inputTensor(0), axis: 3, space: 'c' },
          { tensor: outputTensor(0), axis, space: 'c' },
        ],
      });
    }
  });
});
