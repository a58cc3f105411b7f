import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  expectNoLeaks,
  guardLeaks,
  opParams,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import { BATCH, type ValueInfo } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { positionEmbedding } from './position-embedding.js';

/** Naive `x[b, t, d] + table[t, d]` on row-major arrays. */
function reference(x: Float32Array, table: Float32Array, [batch, time, d]: number[]): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch!; b++)
    for (let t = 0; t < time!; t++)
      for (let k = 0; k < d!; k++) out.push(x[(b * time! + t) * d! + k]! + table[t * d! + k]!);
  return out;
}

describeEachBackend('core.PositionEmbedding', () => {
  guardLeaks();

  for (const [label, shape, maxLength] of [
    ['as many positions as the table', [2, 4, 3], 4],
    ['fewer positions than the table', [3, 2, 3], 5],
  ] as const) {
    it(`adds each position's vector: ${label}`, async () => {
      const attrs = { maxLength };
      const x = seededUniform([...shape], { seed: 1 });
      const params = opParams(positionEmbedding, attrs, [x], 2);
      const { outputs } = await runOp(positionEmbedding, { attrs, inputs: [x], params });
      const expected = reference(
        (await x.data()) as Float32Array,
        (await params.embeddings!.data()) as Float32Array,
        [...shape],
      );
      await expectClose(outputs[0]!, expected, { label });
      tf.dispose([x, ...outputs, ...Object.values(params)]);
    });
  }

  it('has finite-difference gradients for its input and its table (shorter sequence)', async () => {
    const x = seededUniform([2, 3, 2], { seed: 3 });
    await checkOpGradients(positionEmbedding, { attrs: { maxLength: 5 }, inputs: [x] }, { samples: 6 });
    x.dispose();
  });

  it('refuses a sequence longer than maxLength at run time, leaking nothing', async () => {
    const x = seededUniform([1, 6, 2], { seed: 4 });
    const table = tf.zeros([4, 2]);
    await expectNoLeaks(async () => {
      await expect(
        runOp(positionEmbedding, { attrs: { maxLength: 4 }, inputs: [x], params: { embeddings: table } }),
      ).rejects.toThrow(/6 positions but maxLength is 4/);
    });
    tf.dispose([x, table]);
  });
});

describe('core.PositionEmbedding shapes, params and FLOPs', () => {
  const info = (shape: ValueInfo['shape'], dtype: ValueInfo['dtype'] = 'float32'): ValueInfo => ({
    name: 'x',
    dtype,
    shape,
  });
  const attrs = resolveAttrs(positionEmbedding, { maxLength: 8 }, 'pos');

  it('keeps the shape, symbolic time included, and declares a [maxLength, d] table', () => {
    expect(positionEmbedding.inferShape(attrs, [info([BATCH, 'time', 4])])).toEqual([
      { shape: [BATCH, 'time', 4], dtype: 'float32' },
    ]);
    expect(positionEmbedding.params!(attrs, [info([BATCH, 8, 4])])).toEqual([
      { name: 'embeddings', shape: [8, 4], init: { kind: 'uniform', min: -0.05, max: 0.05 } },
    ]);
  });

  it('rejects a non-sequence, an unknown feature size, int32 and too many positions', () => {
    expect(() => positionEmbedding.inferShape(attrs, [info([BATCH, 4])])).toThrow(
      /needs a sequence \[batch, time, features\].*got \[batch, 4\]/,
    );
    expect(() => positionEmbedding.inferShape(attrs, [info([BATCH, 4, 'd'])])).toThrow(/known feature size/);
    expect(() => positionEmbedding.inferShape(attrs, [info([BATCH, 4, 2], 'int32')])).toThrow(/float32/);
    expect(() => positionEmbedding.inferShape(attrs, [info([BATCH, 9, 2])])).toThrow(
      /9 positions but maxLength is 8; raise maxLength/,
    );
  });

  it('counts one addition per element', () => {
    expect(positionEmbedding.flops(attrs, [[2, 5, 3]], [[2, 5, 3]])).toBe(30);
  });
});

describe('core.PositionEmbedding channels', () => {
  it('ties the features of input, output and table, and not the positions', () => {
    const attrs = resolveAttrs(positionEmbedding, { maxLength: 10 }, 'pos');
    const x: ValueInfo = { name: 'x', dtype: 'float32', shape: [BATCH, 6, 4] };
    expect(positionEmbedding.channels!(attrs, [x], [x])).toEqual({
      spaces: { features: 4 },
      axes: [
        { tensor: inputTensor(0), axis: 2, space: 'features' },
        { tensor: outputTensor(0), axis: 2, space: 'features' },
        { tensor: paramTensor('embeddings'), axis: 1, space: 'features' },
      ],
    });
  });
});
