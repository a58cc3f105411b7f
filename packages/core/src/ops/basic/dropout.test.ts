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
import { BATCH } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { createRng, seedFor } from '../../random.js';
import { dropoutOp } from './dropout.js';

/** Inverted dropout written from the definition, drawing the mask as the op's context does. */
function referenceDropout(values: Float32Array, maskSize: number, rate: number, seed: number): Float32Array {
  // The harness names the node 'test'; a node's generator is seeded from the run seed and its name.
  const rng = createRng(seedFor(seed, 'test'));
  const mask = Array.from({ length: maskSize }, () => (rng.next() < rate ? 0 : 1 / (1 - rate)));
  return values.map((v, i) => v * mask[i % maskSize]!);
}

describeEachBackend('core.Dropout', () => {
  guardLeaks();

  it('passes its input through in inference', async () => {
    const x = seededUniform([2, 3]);
    const { outputs } = await runOp(dropoutOp, { attrs: { rate: 0.5 }, inputs: [x] });
    expect(outputs[0]).toBe(x);
    x.dispose();
  });

  it('drops with a seeded mask in training, the same on every backend', async () => {
    const x = seededUniform([4, 8], { seed: 2 });
    const values = (await x.data()) as Float32Array;
    const { outputs } = await runOp(dropoutOp, {
      attrs: { rate: 0.4 },
      inputs: [x],
      training: true,
      seed: 7,
    });
    await expectClose(outputs[0]!, referenceDropout(values, 32, 0.4, 7), { label: 'Dropout' });
    const zeros = Array.from(await outputs[0]!.data()).filter((v) => v === 0).length;
    // 32 draws at rate 0.4: a count outside [4, 22] would mean a broken mask.
    expect(zeros).toBeGreaterThanOrEqual(4);
    expect(zeros).toBeLessThanOrEqual(22);
    tf.dispose([x, ...outputs]);
  });

  it('shares one mask entry along the axes where noiseShape is 1', async () => {
    const x = seededUniform([2, 3, 4], { seed: 3, min: 0.5, max: 1 });
    const values = (await x.data()) as Float32Array;
    const attrs = { rate: 0.5, noiseShape: [1, 1, -1] };
    const { outputs } = await runOp(dropoutOp, { attrs, inputs: [x], training: true, seed: 5 });
    // The mask has 4 entries, repeated for each of the 6 leading positions.
    await expectClose(outputs[0]!, referenceDropout(values, 4, 0.5, 5), { label: 'Dropout noiseShape' });
    tf.dispose([x, ...outputs]);
  });

  it('has finite-difference gradients through the training mask', async () => {
    const x = seededUniform([3, 4]);
    await checkOpGradients(dropoutOp, { attrs: { rate: 0.3 }, inputs: [x], training: true });
    x.dispose();
  });
});

describe('core.Dropout shapes and FLOPs', () => {
  const info = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 'time', 8] };
  const infer = (attrs: Record<string, number | number[]>) =>
    dropoutOp.inferShape(resolveAttrs(dropoutOp, attrs, 'dropout'), [info]);

  it('keeps the input shape; noiseShape may use -1 for symbolic dimensions', () => {
    expect(infer({ rate: 0.1, noiseShape: [-1, 1, 8] })).toEqual([
      { shape: [BATCH, 'time', 8], dtype: 'float32' },
    ]);
  });

  it('rejects rate 1, a noiseShape that does not fit, and int inputs', () => {
    expect(() => infer({ rate: 1 })).toThrow(/rate must be below 1/);
    expect(() => infer({ rate: 0.5, noiseShape: [-1, 8] })).toThrow(
      /noiseShape \[-1, 8\] does not fit the input \[batch, time, 8\]/,
    );
    expect(() => infer({ rate: 0.5, noiseShape: [-1, 1, 4] })).toThrow(/does not fit/);
    const attrs = resolveAttrs(dropoutOp, { rate: 0.5 }, 'dropout');
    expect(() => dropoutOp.inferShape(attrs, [{ ...info, dtype: 'int32' }])).toThrow(/float32/);
  });

  it('costs nothing in inference', () => {
    expect(dropoutOp.flops(resolveAttrs(dropoutOp, { rate: 0.5 }, 'dropout'), [[2, 3]], [[2, 3]])).toBe(0);
  });
});

describe('core.Dropout channels', () => {
  const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 3, 4] };

  it('ties every non-batch axis of input and output', () => {
    const attrs = resolveAttrs(dropoutOp, { rate: 0.5 }, 'drop');
    expect(dropoutOp.channels!(attrs, [x], [x]).spaces).toEqual({ axis1: 3, axis2: 4 });
  });

  it('resizes the noiseShape entries that spell out a size', () => {
    const attrs = resolveAttrs(dropoutOp, { rate: 0.5, noiseShape: [-1, 1, 4] }, 'drop');
    const smaller = { ...x, shape: [BATCH, 3, 2] };
    const resized = dropoutOp.resize!(attrs, [smaller], [smaller], { axis1: 3, axis2: 2 });
    expect(resized.noiseShape).toEqual([-1, 1, 2]);
    expect(dropoutOp.inferShape(resized, [smaller])[0]!.shape).toEqual([BATCH, 3, 2]);
    const unshaped = resolveAttrs(dropoutOp, { rate: 0.5 }, 'drop');
    expect(dropoutOp.resize!(unshaped, [smaller], [smaller], { axis1: 3, axis2: 2 })).toBe(unshaped);
  });
});
