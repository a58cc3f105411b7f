import { describeEachBackend, expectClose, guardLeaks, isGpuBackend, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import type { PaddingMode, Pair } from './conv-geometry.js';
import {
  biasAddFastGrad,
  conv2dFastGrad,
  depthwiseConv2dFastGrad,
  padOrCrop,
  spreadSpatial,
} from './conv-gradients.js';
import { dilateKernel, onCpu } from './spatial-test-utils.js';

interface ConvCase {
  kind: 'conv2d' | 'depthwise';
  x: [number, number, number, number];
  /** `[kh, kw, cin, cout or multiplier]`. */
  w: [number, number, number, number];
  strides: Pair;
  dilations: Pair;
  padding: PaddingMode;
}

const CASES: ConvCase[] = [
  // Asymmetric 'same' padding: 3 rows (1 before, 2 after) and 1 column (after only).
  { kind: 'conv2d', x: [1, 7, 8, 2], w: [4, 2, 2, 3], strides: [2, 1], dilations: [1, 1], padding: 'same' },
  // 'valid' with rows no window reads (8 - 3 is not a multiple of 2).
  { kind: 'conv2d', x: [2, 8, 7, 3], w: [3, 3, 3, 2], strides: [2, 3], dilations: [1, 1], padding: 'valid' },
  { kind: 'conv2d', x: [2, 7, 8, 2], w: [3, 2, 2, 3], strides: [1, 1], dilations: [2, 3], padding: 'same' },
  // 1x1: the matMul path.
  { kind: 'conv2d', x: [2, 4, 5, 3], w: [1, 1, 3, 4], strides: [1, 1], dilations: [1, 1], padding: 'valid' },
  // Asymmetric 'same' padding on the columns (1 before, 2 after).
  {
    kind: 'depthwise',
    x: [2, 8, 7, 2],
    w: [3, 4, 2, 2],
    strides: [1, 2],
    dilations: [1, 1],
    padding: 'same',
  },
  {
    kind: 'depthwise',
    x: [1, 8, 7, 3],
    w: [3, 2, 3, 1],
    strides: [2, 2],
    dilations: [1, 1],
    padding: 'valid',
  },
  {
    kind: 'depthwise',
    x: [2, 7, 8, 2],
    w: [3, 2, 2, 3],
    strides: [1, 1],
    dilations: [3, 2],
    padding: 'valid',
  },
];

function describeCase(c: ConvCase): string {
  return `${c.kind} x[${c.x}] w[${c.w}] strides [${c.strides}] dilations [${c.dilations}] ${c.padding}`;
}

/** `[value, dx, dw]` of `sum(conv(x, w) * r)` for seeded x, w, r. */
function valueAndGrads(c: ConvCase, conv: (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D): tf.Tensor[] {
  return tf.tidy(() => {
    const x = seededUniform(c.x, { seed: 1 });
    const w = seededUniform(c.w, { seed: 2 });
    const outShape = tf.tidy(() => conv(x as tf.Tensor4D, w as tf.Tensor4D).shape);
    const r = seededUniform(outShape, { seed: 3 });
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), r));
    const { value, grads } = tf.valueAndGrads(f)([x, w]);
    return [value, ...grads];
  });
}

/** tfjs's own kernels; dilations folded into the kernel, since its conv gradients reject them. */
function nativeConv(c: ConvCase) {
  return (x: tf.Tensor4D, w: tf.Tensor4D) =>
    c.kind === 'conv2d'
      ? tf.conv2d(x, dilateKernel(w, c.dilations), c.strides, c.padding)
      : tf.depthwiseConv2d(x, dilateKernel(w, c.dilations), c.strides, c.padding);
}

function fastConv(c: ConvCase) {
  const options = { strides: c.strides, dilations: c.dilations, padding: c.padding };
  return (x: tf.Tensor4D, w: tf.Tensor4D) =>
    c.kind === 'conv2d' ? conv2dFastGrad(x, w, options) : depthwiseConv2dFastGrad(x, w, options);
}

describeEachBackend('conv gradients written with forward ops', (backend) => {
  guardLeaks();
  const tolerance = isGpuBackend(backend) ? 1e-3 : 1e-4;

  for (const c of CASES) {
    it(`equal tfjs's native cpu gradients: ${describeCase(c)}`, async () => {
      const expected = await onCpu(backend, () => valueAndGrads(c, nativeConv(c)));
      const actual = valueAndGrads(c, fastConv(c));
      for (const [i, name] of ['value', 'dx', 'dw'].entries()) {
        await expectClose(actual[i]!, expected[i]!, { tolerance, label: `${describeCase(c)}: ${name}` });
      }
      tf.dispose(actual);
    });
  }

  it("biasAddFastGrad's value and gradients equal tfjs's native add on cpu", async () => {
    const compute = (add: (x: tf.Tensor, b: tf.Tensor1D) => tf.Tensor) =>
      tf.tidy(() => {
        const x = seededUniform([2, 3, 4, 5], { seed: 4 });
        const b = seededUniform([5], { seed: 5 }) as tf.Tensor1D;
        const r = seededUniform([2, 3, 4, 5], { seed: 6 });
        const { value, grads } = tf.valueAndGrads((a: tf.Tensor, bb: tf.Tensor) =>
          tf.sum(tf.mul(add(a, bb as tf.Tensor1D), r)),
        )([x, b]);
        return [value, ...grads];
      });
    const expected = await onCpu(backend, () => compute((x, b) => tf.add(x, b)));
    const actual = compute(biasAddFastGrad);
    for (const [i, name] of ['value', 'dx', 'db'].entries()) {
      await expectClose(actual[i]!, expected[i]!, { tolerance, label: name });
    }
    tf.dispose(actual);
  });

  it('spreadSpatial puts each position stride apart with zeros between', async () => {
    const x = tf.tensor4d([1, 2, 3, 4, 5, 6], [1, 2, 3, 1]);
    const spread = spreadSpatial(x, [2, 3]);
    expect(spread.shape).toEqual([1, 4, 9, 1]);
    // biome-ignore format: one image row per line.
    const expected = [
      1, 0, 0, 2, 0, 0, 3, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0,
      4, 0, 0, 5, 0, 0, 6, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    await expectClose(spread, expected);
    tf.dispose([x, spread]);
  });

  it('padOrCrop pads positive amounts and crops negative ones', async () => {
    const x = tf.tensor4d([1, 2, 3, 4, 5, 6], [1, 2, 3, 1]);
    const out = padOrCrop(x, { top: 1, bottom: -1, left: -1, right: 1 });
    expect(out.shape).toEqual([1, 2, 3, 1]);
    await expectClose(out, [0, 0, 0, 2, 3, 0]);
    tf.dispose([x, out]);
  });
});
