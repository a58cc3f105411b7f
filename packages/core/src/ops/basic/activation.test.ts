import { checkOpGradients, describeEachBackend, expectClose, guardLeaks, runOp } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { BATCH } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { ACTIVATIONS, type ActivationName, activationOp, applyActivation } from './activation.js';

/** erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7). */
function erf(v: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(v));
  const poly =
    t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return Math.sign(v) * (1 - poly * Math.exp(-v * v));
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** Elementwise references, written from the definitions. */
const elementwise: Record<Exclude<ActivationName, 'softmax'>, (v: number, alpha?: number) => number> = {
  linear: (v) => v,
  relu: (v) => Math.max(0, v),
  relu6: (v) => Math.min(6, Math.max(0, v)),
  leakyRelu: (v, alpha = 0.2) => (v > 0 ? v : alpha * v),
  elu: (v, alpha = 1) => (v > 0 ? v : alpha * Math.expm1(v)),
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  swish: (v) => v * sigmoid(v),
  sigmoid,
  tanh: Math.tanh,
};

/** Softmax over `axis` of a row-major array of shape `shape`. */
function referenceSoftmax(values: Float32Array, shape: number[], axis: number): Float32Array {
  const out = new Float32Array(values.length);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const size = shape[axis]!;
  const outer = values.length / (inner * size);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const at = (k: number) => o * size * inner + k * inner + i;
      let max = Number.NEGATIVE_INFINITY;
      for (let k = 0; k < size; k++) max = Math.max(max, values[at(k)]!);
      let sum = 0;
      for (let k = 0; k < size; k++) sum += Math.exp(values[at(k)]! - max);
      for (let k = 0; k < size; k++) out[at(k)] = Math.exp(values[at(k)]! - max) / sum;
    }
  }
  return out;
}

/** Values in ±[0.3, 2.3], none near the kinks of relu, relu6, leakyRelu and elu. */
const values = Float32Array.from(
  { length: 24 },
  (_, i) => (i % 2 === 0 ? 1 : -1) * (0.3 + ((i * 7) % 23) / 10),
);
const shape = [2, 3, 4];

describeEachBackend('applyActivation and core.Activation', () => {
  guardLeaks();

  for (const fn of ACTIVATIONS.filter((name) => name !== 'softmax')) {
    it(`${fn} matches its definition and has finite-difference gradients`, async () => {
      const x = tf.tensor(values, shape);
      const { outputs } = await runOp(activationOp, { attrs: { fn }, inputs: [x] });
      const reference = elementwise[fn as Exclude<ActivationName, 'softmax'>];
      await expectClose(
        outputs[0]!,
        Array.from(values, (v) => reference(v)),
        { label: fn },
      );
      await checkOpGradients(activationOp, { attrs: { fn }, inputs: [x] });
      tf.dispose([x, ...outputs]);
    });
  }

  it('uses alpha as the leakyRelu slope and the elu scale', async () => {
    const x = tf.tensor(values, shape);
    for (const [fn, alpha] of [
      ['leakyRelu', 0.05],
      ['elu', 0.5],
    ] as const) {
      const { outputs } = await runOp(activationOp, { attrs: { fn, alpha }, inputs: [x] });
      await expectClose(
        outputs[0]!,
        Array.from(values, (v) => elementwise[fn](v, alpha)),
        { label: fn },
      );
      await checkOpGradients(activationOp, { attrs: { fn, alpha }, inputs: [x] });
      tf.dispose(outputs);
    }
    x.dispose();
  });

  for (const axis of [-1, 1, 0]) {
    it(`softmax over axis ${axis} matches its definition and has finite-difference gradients`, async () => {
      const x = tf.tensor(values, shape);
      const { outputs } = await runOp(activationOp, { attrs: { fn: 'softmax', axis }, inputs: [x] });
      const resolved = axis < 0 ? axis + shape.length : axis;
      await expectClose(outputs[0]!, referenceSoftmax(values, shape, resolved), { label: 'softmax' });
      await checkOpGradients(activationOp, { attrs: { fn: 'softmax', axis }, inputs: [x] });
      tf.dispose([x, ...outputs]);
    });
  }

  it('applyActivation keeps tfjs-style ownership: linear returns its input, others a new tensor', () => {
    const x = tf.tensor(values, shape);
    expect(applyActivation('linear', x)).toBe(x);
    const y = applyActivation('gelu', x);
    expect(y).not.toBe(x);
    tf.dispose([x, y]);
  });
});

describe('core.Activation shapes and FLOPs', () => {
  const info = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 'time', 8] };

  it('keeps the input shape, symbolic dimensions included', () => {
    const attrs = resolveAttrs(activationOp, { fn: 'softmax', axis: 1 }, 'act');
    expect(activationOp.inferShape(attrs, [info])).toEqual([{ shape: [BATCH, 'time', 8], dtype: 'float32' }]);
  });

  it('needs fn, and rejects a softmax axis outside the input and int inputs', () => {
    expect(() => resolveAttrs(activationOp, {}, 'act')).toThrow(/needs attribute 'fn'/);
    const attrs = resolveAttrs(activationOp, { fn: 'softmax', axis: 3 }, 'act');
    expect(() => activationOp.inferShape(attrs, [info])).toThrow(/softmax axis 3 is out of range/);
    const relu = resolveAttrs(activationOp, { fn: 'relu' }, 'act');
    expect(() => activationOp.inferShape(relu, [{ ...info, dtype: 'int32' }])).toThrow(/float32/);
  });

  it('counts FLOPs per output element', () => {
    const relu = resolveAttrs(activationOp, { fn: 'relu' }, 'act');
    expect(activationOp.flops(relu, [[2, 3]], [[2, 3]])).toBe(6);
    const linear = resolveAttrs(activationOp, { fn: 'linear' }, 'act');
    expect(activationOp.flops(linear, [[2, 3]], [[2, 3]])).toBe(0);
  });
});

describe('core.Activation channels', () => {
  const x = { name: 'x', dtype: 'float32' as const, shape: [BATCH, 3, 4] };

  it('ties every non-batch axis of input and output, mixing none for an elementwise function', () => {
    const { spaces, axes } = activationOp.channels!(
      resolveAttrs(activationOp, { fn: 'relu' }, 'act'),
      [x],
      [x],
    );
    expect(spaces).toEqual({ axis1: 3, axis2: 4 });
    expect(axes.map((a) => [a.tensor.kind, a.axis, a.space, a.mixes ?? false])).toEqual([
      ['output', 1, 'axis1', false],
      ['input', 1, 'axis1', false],
      ['output', 2, 'axis2', false],
      ['input', 2, 'axis2', false],
    ]);
  });

  it('marks the softmax axis as mixing, wherever it is', () => {
    const mixed = (axis: number) =>
      activationOp.channels!(resolveAttrs(activationOp, { fn: 'softmax', axis }, 'act'), [x], [x])
        .axes.filter((a) => a.mixes)
        .map((a) => a.axis);
    expect(mixed(-1)).toEqual([2, 2]);
    expect(mixed(1)).toEqual([1, 1]);
  });
});
