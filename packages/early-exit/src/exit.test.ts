import { type Attrs, BATCH, createOpContext, resolveAttrs } from '@dynn/core';
import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  opParams,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { type ExitAttrs, exitOp } from './exit.js';

/** Rows of a tensor as nested arrays of numbers, read asynchronously. */
async function host(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

/** Mean over the spatial axes of an NHWC image given row-major, per row: [rows][channels]. */
function poolRows(values: number[], [n, h, w, c]: number[]): number[][] {
  return Array.from({ length: n! }, (_, r) =>
    Array.from({ length: c! }, (_, ch) => {
      let sum = 0;
      for (let p = 0; p < h! * w!; p++) sum += values[(r * h! * w! + p) * c! + ch]!;
      return sum / (h! * w!);
    }),
  );
}

function denseRows(rows: number[][], kernel: number[], bias: number[], units: number): number[][] {
  return rows.map((x) =>
    Array.from({ length: units }, (_, j) => x.reduce((s, v, i) => s + v * kernel[i * units + j]!, bias[j]!)),
  );
}

/** A 3x3 'same' convolution with relu, naive loops, NHWC, kernel [3, 3, cin, f]. */
function conv3x3Relu(
  values: number[],
  [n, h, w, c]: number[],
  kernel: number[],
  bias: number[],
  f: number,
): number[] {
  const out: number[] = [];
  for (let r = 0; r < n!; r++)
    for (let y = 0; y < h!; y++)
      for (let x = 0; x < w!; x++)
        for (let o = 0; o < f; o++) {
          let sum = bias[o]!;
          for (let dy = 0; dy < 3; dy++)
            for (let dx = 0; dx < 3; dx++) {
              const yy = y + dy - 1;
              const xx = x + dx - 1;
              if (yy < 0 || yy >= h! || xx < 0 || xx >= w!) continue;
              for (let i = 0; i < c!; i++)
                sum +=
                  values[((r * h! + yy) * w! + xx) * c! + i]! * kernel[((dy * 3 + dx) * c! + i) * f + o]!;
            }
          out.push(Math.max(0, sum));
        }
  return out;
}

/** An independent JS forward of an exit head: logits per row, and halting probabilities. */
async function reference(attrs: Attrs, h: tf.Tensor, params: Record<string, tf.Tensor>) {
  const x = await host(h);
  const p: Record<string, number[]> = {};
  for (const [name, t] of Object.entries(params)) p[name] = await host(t);
  const classes = attrs.classes as number;
  const rows =
    h.rank === 4
      ? poolRows(x, h.shape)
      : Array.from({ length: h.shape[0]! }, (_, r) => x.slice(r * h.shape[1]!, (r + 1) * h.shape[1]!));
  let logits: number[][];
  if (attrs.head === 'mlp') {
    const hidden = denseRows(rows, p.hiddenKernel!, p.hiddenBias!, attrs.hidden as number).map((r) =>
      r.map((v) => Math.max(0, v)),
    );
    logits = denseRows(hidden, p.kernel!, p.bias!, classes);
  } else if (attrs.head === 'conv') {
    const f = attrs.convFilters as number;
    const convolved = conv3x3Relu(x, h.shape, p.convKernel!, p.convBias!, f);
    logits = denseRows(
      poolRows(convolved, [h.shape[0]!, h.shape[1]!, h.shape[2]!, f]),
      p.kernel!,
      p.bias!,
      classes,
    );
  } else {
    logits = denseRows(rows, p.kernel!, p.bias!, classes);
  }
  const halt = attrs.halting
    ? denseRows(rows, p.haltKernel!, p.haltBias!, 1).map(([v]) => 1 / (1 + Math.exp(-v!)))
    : logits.map((row) => {
        const max = Math.max(...row);
        return 1 / row.reduce((s, v) => s + Math.exp(v - max), 0);
      });
  return { logits: logits.flat(), halt };
}

const cases: { label: string; attrs: Attrs; shape: number[] }[] = [
  { label: 'linear head on features', attrs: { classes: 3 }, shape: [3, 5] },
  {
    label: 'linear head on an image (pooled) with halting',
    attrs: { classes: 4, halting: true },
    shape: [2, 3, 3, 2],
  },
  { label: 'mlp head', attrs: { classes: 3, head: 'mlp', hidden: 4 }, shape: [3, 5] },
  {
    label: 'conv head with halting',
    attrs: { classes: 3, head: 'conv', convFilters: 3, halting: true },
    shape: [2, 4, 3, 2],
  },
  { label: 'shared head', attrs: { classes: 2, head: 'shared', sharedHead: 'lm' }, shape: [3, 4] },
];
// The shared head computes what the linear head does (only its parameter names differ).
const gradientCases = cases.filter((c) => c.attrs.head !== 'shared');

describeEachBackend('early-exit.Exit', () => {
  guardLeaks();

  for (const { label, attrs, shape } of cases) {
    it(`matches a naive reference: ${label}`, async () => {
      const h = seededUniform(shape, { seed: 3 });
      const params = opParams(exitOp, attrs, [h], 5);
      const { outputs } = await runOp(exitOp, { attrs, inputs: [h], params });
      const expected = await reference(attrs, h, params);
      expect(outputs[0]).toBe(h);
      await expectClose(outputs[1]!, expected.logits, { label: 'logits' });
      await expectClose(outputs[3]!, expected.halt, { label: 'halt' });
      // Without a previous exit the state is (prediction, 0 agreements).
      const predictions = Array.from({ length: shape[0]! }, (_, r) => {
        const row = expected.logits.slice(r * (attrs.classes as number), (r + 1) * (attrs.classes as number));
        return [row.indexOf(Math.max(...row)), 0];
      });
      await expectClose(outputs[2]!, predictions.flat(), { label: 'state' });
      tf.dispose([h, ...outputs.slice(1), ...Object.values(params)]);
    });
  }

  for (const { label, attrs, shape } of gradientCases) {
    it(`has gradients matching finite differences: ${label}`, async () => {
      const h = seededUniform(shape, { seed: 4 });
      await checkOpGradients(exitOp, { attrs, inputs: [h], seed: 6 }, { samples: 4 });
      h.dispose();
    });
  }

  it('counts agreements with the previous exit in the state', async () => {
    const attrs = { classes: 3 };
    const h = tf.tensor2d([
      [3, 0, 0],
      [0, 3, 0],
      [0, 0, 3],
    ]);
    const kernel = tf.eye(3);
    const bias = tf.zeros([3]);
    // Previous predictions 0, 0, 2 with 0, 4, 1 agreements so far.
    const previous = tf.tensor2d([
      [0, 0],
      [0, 4],
      [2, 1],
    ]);
    const { outputs } = await runOp(exitOp, { attrs, inputs: [h, previous], params: { kernel, bias } });
    await expectClose(outputs[2]!, [0, 1, 1, 0, 2, 2]);
    tf.dispose([h, kernel, bias, previous, ...outputs.slice(1)]);
  });

  it('does not pass gradients from the halting head into the features', async () => {
    const attrs = { classes: 2, halting: true };
    const h = seededUniform([2, 3], { seed: 8 });
    const params = opParams(exitOp, attrs, [h], 9);
    const { context } = createOpContext({
      node: { name: 'exit', op: exitOp.type, inputs: [], outputs: [], attrs },
      attrs: resolved(attrs),
      params,
      state: {},
      training: true,
      options: {},
      rows: { batchSize: 2, indices: Int32Array.from([0, 1]) },
      seed: 0,
    });
    const grad = tf.grad(
      (x: tf.Tensor) => tf.sum((exitOp.forward(context, [x]) as tf.Tensor[])[3]!) as tf.Scalar,
    )(h);
    await expectClose(grad, [0, 0, 0, 0, 0, 0]);
    tf.dispose([h, grad, ...Object.values(params)]);
  });
});

/** Attributes with defaults filled in. */
function resolved(attrs: Attrs): ExitAttrs {
  return resolveAttrs(exitOp, attrs, 'exit');
}

it('infers shapes with a symbolic batch and rejects bad inputs', () => {
  const attrs = resolved({ classes: 5 });
  const image = { name: 'h', dtype: 'float32' as const, shape: [BATCH, 4, 4, 8] };
  const state = { name: 's', dtype: 'float32' as const, shape: [BATCH, 2] };
  expect(exitOp.inferShape(attrs, [image, state])).toEqual([
    { shape: [BATCH, 4, 4, 8], dtype: 'float32' },
    { shape: [BATCH, 5], dtype: 'float32' },
    { shape: [BATCH, 2], dtype: 'float32' },
    { shape: [BATCH, 1], dtype: 'float32' },
  ]);
  expect(() => exitOp.inferShape(attrs, [{ name: 'h', dtype: 'float32', shape: [BATCH, 3, 8] }])).toThrow(
    /an exit needs features \[batch, d\] or an NHWC image \[batch, h, w, c\].*got \[batch, 3, 8\]/,
  );
  expect(() => exitOp.inferShape(attrs, [image, { ...state, shape: [BATCH, 3] }])).toThrow(
    /state input must be float32 \[batch, 2\]/,
  );
  const conv = resolved({ classes: 5, head: 'conv' });
  expect(() => exitOp.inferShape(conv, [{ name: 'h', dtype: 'float32', shape: [BATCH, 8] }])).toThrow(
    /head 'conv' needs an NHWC image/,
  );
});

it('counts head FLOPs on the rows given', () => {
  // linear on [4, 6]: 4 rows x 3 classes x (2 x 6 + 1), plus 7 per class and row for the decision.
  expect(exitOp.flops(resolved({ classes: 3 }), [[4, 6]], [])).toBe(4 * 3 * 13 + 7 * 4 * 3);
  // Twice the rows, twice the FLOPs.
  const image = resolved({ classes: 3, head: 'conv', convFilters: 2, halting: true });
  expect(exitOp.flops(image, [[2, 3, 3, 4]], [])).toBe(2 * exitOp.flops(image, [[1, 3, 3, 4]], []));
});
