import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  expectNoLeaks,
  guardLeaks,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import { type Attrs, BATCH, type ValueInfo } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { timeStep } from './time-step.js';

/** Naive `x[:, t]` of a row-major [batch, time, ...f] array. */
function reference(x: Float32Array, shape: readonly number[], t: number): number[] {
  const [batch, time] = shape as [number, number];
  const width = shape.slice(2).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let b = 0; b < batch; b++) for (let k = 0; k < width; k++) out.push(x[(b * time + t) * width + k]!);
  return out;
}

describeEachBackend('core.TimeStep', () => {
  guardLeaks();

  for (const [label, shape, index, position] of [
    ['the last position (default)', [3, 4, 2], undefined, 3],
    ['the first position', [2, 3, 5], 0, 0],
    ['a position counted from the end, rank 4', [2, 5, 2, 3], -2, 3],
  ] as const) {
    it(`takes ${label}`, async () => {
      const attrs: Attrs = index === undefined ? {} : { index };
      const x = seededUniform([...shape], { seed: 1 });
      const { outputs } = await runOp(timeStep, { attrs, inputs: [x] });
      expect(outputs[0]!.shape).toEqual([shape[0], ...shape.slice(2)]);
      await expectClose(outputs[0]!, reference((await x.data()) as Float32Array, shape, position), { label });
      tf.dispose([x, ...outputs]);
    });
  }

  it('has finite-difference gradients (zero outside the position taken)', async () => {
    const x = seededUniform([2, 3, 2], { seed: 2 });
    await checkOpGradients(timeStep, { attrs: { index: 1 }, inputs: [x] }, { samples: 12 });
    x.dispose();
  });

  it('refuses a position outside the sequence at run time, leaking nothing', async () => {
    const x = seededUniform([2, 3, 2], { seed: 3 });
    await expectNoLeaks(async () => {
      await expect(runOp(timeStep, { attrs: { index: -4 }, inputs: [x] })).rejects.toThrow(
        /index -4 is outside a sequence of 3 positions/,
      );
    });
    x.dispose();
  });
});

describe('core.TimeStep shapes and FLOPs', () => {
  const info = (shape: ValueInfo['shape']): ValueInfo => ({ name: 'x', dtype: 'float32', shape });

  it('drops the time axis, symbolic time included', () => {
    const last = resolveAttrs(timeStep, {}, 'last');
    expect(timeStep.inferShape(last, [info([BATCH, 'time', 4])])).toEqual([
      { shape: [BATCH, 4], dtype: 'float32' },
    ]);
    expect(timeStep.inferShape(last, [info([BATCH, 6, 3, 2])])).toEqual([
      { shape: [BATCH, 3, 2], dtype: 'float32' },
    ]);
  });

  it('rejects a non-sequence and a position outside a known length', () => {
    const last = resolveAttrs(timeStep, {}, 'last');
    expect(() => timeStep.inferShape(last, [info([BATCH, 4])])).toThrow(
      /needs a sequence \[batch, time, \.\.\.features\], got \[batch, 4\]/,
    );
    const far = resolveAttrs(timeStep, { index: 5 }, 'far');
    expect(() => timeStep.inferShape(far, [info([BATCH, 5, 2])])).toThrow(
      /index 5 is outside a sequence of 5 positions/,
    );
    expect(timeStep.inferShape(far, [info([BATCH, 'time', 2])])).toEqual([
      { shape: [BATCH, 2], dtype: 'float32' },
    ]);
  });

  it('copies without arithmetic', () => {
    expect(timeStep.flops(resolveAttrs(timeStep, {}, 't'), [[2, 5, 3]], [[2, 3]])).toBe(0);
  });
});

describe('core.TimeStep channels', () => {
  it('ties each numeric feature axis to the output axis one lower', () => {
    const attrs = resolveAttrs(timeStep, {}, 'step');
    const x: ValueInfo = { name: 'x', dtype: 'float32', shape: [BATCH, 5, 'node', 3] };
    const y: ValueInfo = { name: 'y', dtype: 'float32', shape: [BATCH, 'node', 3] };
    expect(timeStep.channels!(attrs, [x], [y])).toEqual({
      spaces: { axis2: 3 },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'axis2' },
        { tensor: outputTensor(0), axis: 2, space: 'axis2' },
      ],
    });
  });
});
