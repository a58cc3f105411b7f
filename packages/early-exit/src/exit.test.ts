import {
  type Attrs,
  BATCH,
  createOpContext,
  inputTensor,
  isDynnError,
  outputTensor,
  paramTensor,
  resolveAttrs,
} from '@dynn/core';
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

/** An NHWC image given row-major as one vector per row, [rows][h * w * c]: what `pool: 'flatten'` reads. */
function flattenRows(values: number[], [n, ...rest]: number[]): number[][] {
  const size = rest.reduce((a, b) => a * b, 1);
  return Array.from({ length: n! }, (_, r) => values.slice(r * size, (r + 1) * size));
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
  const pool = (values: number[], shape: number[]) =>
    attrs.pool === 'flatten' ? flattenRows(values, shape) : poolRows(values, shape);
  const rows =
    h.rank === 4
      ? pool(x, h.shape)
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
      pool(convolved, [h.shape[0]!, h.shape[1]!, h.shape[2]!, f]),
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
  {
    label: 'mlp head on a flattened image',
    attrs: { classes: 3, head: 'mlp', hidden: 4, pool: 'flatten' },
    shape: [2, 3, 2, 2],
  },
  {
    label: 'conv head, flattened',
    attrs: { classes: 3, head: 'conv', convFilters: 2, pool: 'flatten' },
    shape: [2, 2, 2, 2],
  },
  {
    label: 'linear head on a flattened image with halting',
    attrs: { classes: 3, pool: 'flatten', halting: true },
    shape: [2, 2, 2, 3],
  },
];
// The shared head computes what the linear head does (only its parameter names differ). A halting
// head on flattened features sees each input value directly, so its stopped gradient (by design)
// would dominate the finite differences of the input.
const gradientCases = cases.filter(
  (c) => c.attrs.head !== 'shared' && !(c.attrs.pool === 'flatten' && c.attrs.halting),
);

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

/**
 * An independent JS forward of an exit on a sequence [batch, time, d]: the rows the head reads
 * (every position, or each row's last), the shared head's layer norm (epsilon 1e-3, as
 * core.LayerNorm's default), the head and the halting probabilities.
 */
async function sequenceReference(attrs: Attrs, h: tf.Tensor, params: Record<string, tf.Tensor>) {
  const x = await host(h);
  const p: Record<string, number[]> = {};
  for (const [name, t] of Object.entries(params)) p[name] = await host(t);
  const [batch, time, d] = h.shape as [number, number, number];
  const row = (b: number, t: number) => x.slice((b * time + t) * d, (b * time + t + 1) * d);
  const rows: number[][] = [];
  for (let b = 0; b < batch; b++) {
    if (attrs.positions === 'last') rows.push(row(b, time - 1));
    else for (let t = 0; t < time; t++) rows.push(row(b, t));
  }
  const normalise = (r: number[]) => {
    const mean = r.reduce((a, v) => a + v, 0) / d;
    const variance = r.reduce((a, v) => a + (v - mean) ** 2, 0) / d;
    return r.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-3)) * p.gamma![i]! + p.beta![i]!);
  };
  const headRows = attrs.sharedNorm ? rows.map(normalise) : rows;
  const classes = attrs.classes as number;
  const logits =
    attrs.head === 'mlp'
      ? denseRows(
          denseRows(headRows, p.hiddenKernel!, p.hiddenBias!, attrs.hidden as number).map((r) =>
            r.map((v) => Math.max(0, v)),
          ),
          p.kernel!,
          p.bias!,
          classes,
        )
      : denseRows(headRows, p.kernel!, p.bias!, classes);
  const halt = attrs.halting
    ? denseRows(rows, p.haltKernel!, p.haltBias!, 1).map(([v]) => 1 / (1 + Math.exp(-v!)))
    : logits.map((r) => 1 / r.reduce((s, v) => s + Math.exp(v - Math.max(...r)), 0));
  const state = logits.flatMap((r) => [r.indexOf(Math.max(...r)), 0]);
  return { logits: logits.flat(), halt, state };
}

const sequenceCases: { label: string; attrs: Attrs; outputRows: number[] }[] = [
  {
    label: 'linear head on every position, with halting',
    attrs: { classes: 3, halting: true },
    outputRows: [2, 3],
  },
  { label: 'linear head on the last position', attrs: { classes: 3, positions: 'last' }, outputRows: [2] },
  {
    label: 'shared head with a shared norm, every position',
    attrs: { classes: 3, head: 'shared', sharedHead: 'lm', sharedNorm: 'lnf' },
    outputRows: [2, 3],
  },
  {
    label: 'shared head with a shared norm, last position, with halting',
    attrs: { classes: 3, head: 'shared', sharedNorm: 'lnf', positions: 'last', halting: true },
    outputRows: [2],
  },
  { label: 'mlp head on every position', attrs: { classes: 3, head: 'mlp', hidden: 5 }, outputRows: [2, 3] },
];

describeEachBackend('early-exit.Exit on sequences [batch, time, d]', () => {
  guardLeaks();

  for (const { label, attrs, outputRows } of sequenceCases) {
    it(`matches a naive reference: ${label}`, async () => {
      const h = seededUniform([2, 3, 4], { seed: 13 });
      const params = opParams(exitOp, attrs, [h], 15);
      const { outputs } = await runOp(exitOp, { attrs, inputs: [h], params });
      const expected = await sequenceReference(resolved(attrs), h, params);
      expect(outputs[0]).toBe(h);
      expect(outputs.slice(1).map((t) => t.shape)).toEqual([
        [...outputRows, 3],
        [...outputRows, 2],
        [...outputRows, 1],
      ]);
      await expectClose(outputs[1]!, expected.logits, { label: 'logits' });
      await expectClose(outputs[2]!, expected.state, { label: 'state' });
      await expectClose(outputs[3]!, expected.halt, { label: 'halt' });
      tf.dispose([h, ...outputs.slice(1), ...Object.values(params)]);
    });
  }

  // Without halting heads: their stop-gradient makes the features' gradient differ from finite
  // differences by design. Seeds where no position's two best classes nearly tie: the state output
  // (an arg-max) would jump under the larger finite-difference steps of GPU backends.
  const gradientSequenceCases: { label: string; attrs: Attrs; seeds: [number, number] }[] = [
    { label: 'linear head on every position', attrs: { classes: 3 }, seeds: [21, 22] },
    {
      label: 'shared head with a shared norm, last position',
      attrs: { classes: 3, head: 'shared', sharedNorm: 'lnf', positions: 'last' },
      seeds: [21, 22],
    },
    { ...sequenceCases[4]!, seeds: [14, 16] },
  ];
  for (const { label, attrs, seeds } of gradientSequenceCases) {
    it(`has gradients matching finite differences: ${label}`, async () => {
      const h = seededUniform([2, 3, 4], { seed: seeds[0] });
      await checkOpGradients(exitOp, { attrs, inputs: [h], seed: seeds[1] }, { samples: 4 });
      h.dispose();
    });
  }

  it('counts agreements with the previous exit per position', async () => {
    const attrs = { classes: 2 };
    // Position 0 predicts class 0, position 1 class 1, in both rows.
    const h = tf.tensor3d([
      [
        [2, 0],
        [0, 2],
      ],
      [
        [2, 0],
        [0, 2],
      ],
    ]);
    const kernel = tf.eye(2);
    const bias = tf.zeros([2]);
    const previous = tf.tensor3d([
      [
        [0, 3],
        [0, 1],
      ],
      [
        [1, 0],
        [1, 2],
      ],
    ]);
    const { outputs } = await runOp(exitOp, { attrs, inputs: [h, previous], params: { kernel, bias } });
    await expectClose(outputs[2]!, [0, 4, 1, 0, 0, 0, 1, 3]);
    tf.dispose([h, kernel, bias, previous, ...outputs.slice(1)]);
  });

  it('refuses a criterion on every position before computing anything', async () => {
    const h = seededUniform([2, 3, 4], { seed: 17 });
    const attrs = { classes: 3 };
    const params = opParams(exitOp, attrs, [h], 18);
    const before = tf.memory().numTensors;
    let error: unknown;
    try {
      await runOp(exitOp, {
        attrs,
        inputs: [h],
        params,
        options: { 'early-exit': { criterion: 'maxProb', thresholds: 0.5 } },
      });
    } catch (e) {
      error = e;
    }
    expect(isDynnError(error) && error.code).toBe('INVALID_OPTION');
    expect((error as Error).message).toMatch(/positions 'all'.*early-exit.last-position/);
    expect(tf.memory().numTensors).toBe(before);
    // In training no row leaves, so the options are only checked.
    const trained = await runOp(exitOp, {
      attrs,
      inputs: [h],
      params,
      training: true,
      options: { 'early-exit': { criterion: 'maxProb', thresholds: 0.5 } },
    });
    tf.dispose([h, ...trained.outputs.slice(1), ...Object.values(params)]);
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
  expect(() =>
    exitOp.inferShape(attrs, [{ name: 'h', dtype: 'float32', shape: [BATCH, 3, 8, 2, 2] }]),
  ).toThrow(
    /an exit needs features \[batch, d\], a sequence \[batch, time, d\] or an NHWC image \[batch, h, w, c\].*got \[batch, 3, 8, 2, 2\]/,
  );
  expect(() => exitOp.inferShape(attrs, [{ name: 'h', dtype: 'float32', shape: [BATCH, 3, 'd'] }])).toThrow(
    /known last axis, got \[batch, 3, d\]/,
  );
  expect(() => exitOp.inferShape(attrs, [image, { ...state, shape: [BATCH, 3] }])).toThrow(
    /state input must be float32 \[batch, 2\]/,
  );
  const conv = resolved({ classes: 5, head: 'conv' });
  expect(() => exitOp.inferShape(conv, [{ name: 'h', dtype: 'float32', shape: [BATCH, 8] }])).toThrow(
    /head 'conv' needs an NHWC image/,
  );
  const flat = resolved({ classes: 5, pool: 'flatten' });
  expect(() => exitOp.inferShape(flat, [{ name: 'h', dtype: 'float32', shape: [BATCH, 'h', 4, 8] }])).toThrow(
    /pool 'flatten' needs an image of known height and width, got \[batch, h, 4, 8\]/,
  );
});

it('infers per-position and last-position shapes of a sequence, symbolic time included', () => {
  const sequence = { name: 'h', dtype: 'float32' as const, shape: [BATCH, 'time', 8] };
  const all = resolved({ classes: 5 });
  expect(
    exitOp.inferShape(all, [sequence, { name: 's', dtype: 'float32', shape: [BATCH, 'time', 2] }]),
  ).toEqual([
    { shape: [BATCH, 'time', 8], dtype: 'float32' },
    { shape: [BATCH, 'time', 5], dtype: 'float32' },
    { shape: [BATCH, 'time', 2], dtype: 'float32' },
    { shape: [BATCH, 'time', 1], dtype: 'float32' },
  ]);
  const last = resolved({ classes: 5, positions: 'last' });
  expect(exitOp.inferShape(last, [sequence]).slice(1)).toEqual([
    { shape: [BATCH, 5], dtype: 'float32' },
    { shape: [BATCH, 2], dtype: 'float32' },
    { shape: [BATCH, 1], dtype: 'float32' },
  ]);
  expect(() =>
    exitOp.inferShape(all, [sequence, { name: 's', dtype: 'float32', shape: [BATCH, 2] }]),
  ).toThrow(/state input must be float32 \[batch, time, 2\], got float32\[batch, 2\]/);
  expect(() => exitOp.inferShape(resolved({ classes: 5, sharedNorm: 'lnf' }), [sequence])).toThrow(
    /sharedNorm 'lnf' needs head 'shared', got 'linear'/,
  );
  // The shared norm adds gamma and beta, shared with a core.LayerNorm node named 'lnf'.
  const shared = resolved({ classes: 5, head: 'shared', sharedHead: 'lm', sharedNorm: 'lnf' });
  expect(exitOp.params!(shared, [sequence]).map((p) => [p.name, p.shared, p.shape])).toEqual([
    ['gamma', 'lnf/gamma', [8]],
    ['beta', 'lnf/beta', [8]],
    ['kernel', 'lm/kernel', [8, 5]],
    ['bias', 'lm/bias', [5]],
  ]);
});

it('accepts the carried inputs of an op-set 1 exit and ignores them', async () => {
  const attrs = { classes: 3, carried: ['exit0'] };
  const h = seededUniform([2, 4], { seed: 19 });
  const state = tf.zeros([2, 2]);
  const earlier = tf.ones([2, 3]);
  const params = opParams(exitOp, attrs, [h], 20);
  const [withCarried, without] = [
    await runOp(exitOp, { attrs, inputs: [h, state, earlier], params }),
    await runOp(exitOp, { attrs: { classes: 3 }, inputs: [h, state], params }),
  ];
  expect(Array.from(await withCarried.outputs[1]!.data())).toEqual(
    Array.from(await without.outputs[1]!.data()),
  );
  const info = (shape: number[]) => ({ name: 'v', dtype: 'float32' as const, shape: [BATCH, ...shape] });
  expect(() => exitOp.inferShape(resolved(attrs), [info([4]), info([2])])).toThrow(
    /previous exit's state \(then 1 carried outputs of an op-set 1 graph\), got 2 inputs/,
  );
  tf.dispose([
    h,
    state,
    earlier,
    ...withCarried.outputs.slice(1),
    ...without.outputs.slice(1),
    ...Object.values(params),
  ]);
});

it('counts head FLOPs on the rows given', () => {
  // linear on [4, 6]: 4 rows x 3 classes x (2 x 6 + 1), plus 7 per class and row for the decision.
  expect(exitOp.flops(resolved({ classes: 3 }), [[4, 6]], [])).toBe(4 * 3 * 13 + 7 * 4 * 3);
  // Twice the rows, twice the FLOPs.
  const image = resolved({ classes: 3, head: 'conv', convFilters: 2, halting: true });
  expect(exitOp.flops(image, [[2, 3, 3, 4]], [])).toBe(2 * exitOp.flops(image, [[1, 3, 3, 4]], []));
  // A flattened image [1, 3, 3, 4] is a vector of 36 (the reshape is free); pooled, it costs one
  // add per value and gives 4.
  expect(exitOp.flops(resolved({ classes: 3, pool: 'flatten' }), [[1, 3, 3, 4]], [])).toBe(
    3 * (2 * 36 + 1) + 7 * 3,
  );
  expect(exitOp.flops(resolved({ classes: 3 }), [[1, 3, 3, 4]], [])).toBe(36 + 3 * (2 * 4 + 1) + 7 * 3);
  // A sequence [2, 5, 6]: every position is a row with positions 'all', one per row with 'last';
  // the shared norm adds 7 per feature and row.
  const all = resolved({ classes: 3, head: 'shared', sharedNorm: 'lnf' });
  expect(exitOp.flops(all, [[2, 5, 6]], [])).toBe(10 * (7 * 6 + 3 * 13 + 7 * 3));
  expect(exitOp.flops({ ...all, positions: 'last' }, [[2, 5, 6]], [])).toBe(2 * (7 * 6 + 3 * 13 + 7 * 3));
});

/** Input and output infos of an exit on `shapes`, as a graph node would have them. */
function signature(attrs: ExitAttrs, shapes: (number | string)[][]) {
  const inputs = shapes.map((shape, i) => ({ name: `in${i}`, dtype: 'float32' as const, shape }));
  const outputs = exitOp.inferShape(attrs, inputs).map((o, i) => ({ name: `out${i}`, ...o }));
  return { inputs, outputs };
}

/** The channel declaration of an exit on `shapes`. */
function channelsOn(attrs: ExitAttrs, shapes: (number | string)[][]) {
  const { inputs, outputs } = signature(attrs, shapes);
  return exitOp.channels!(attrs, inputs, outputs);
}

it('ties features to the head and logits to classes; resizing sets classes and shrinks the head', () => {
  const attrs = resolved({ classes: 4, halting: true });
  const { inputs, outputs } = signature(attrs, [[BATCH, 6]]);
  expect(exitOp.channels!(attrs, inputs, outputs)).toEqual({
    spaces: { features: 6, classes: 4 },
    axes: [
      { tensor: inputTensor(0), axis: 1, space: 'features' },
      { tensor: outputTensor(0), axis: 1, space: 'features' },
      { tensor: paramTensor('kernel'), axis: 0, space: 'features' },
      { tensor: paramTensor('kernel'), axis: 1, space: 'classes' },
      { tensor: paramTensor('bias'), axis: 0, space: 'classes' },
      { tensor: paramTensor('haltKernel'), axis: 0, space: 'features' },
      { tensor: outputTensor(1), axis: -1, space: 'classes', mixes: true },
    ],
  });
  // Five of six features and three of four classes kept.
  const narrow = signature(attrs, [[BATCH, 5]]).inputs;
  const wanted = [{ name: 'logits', dtype: 'float32' as const, shape: [BATCH, 3] }];
  const resized = exitOp.resize!(attrs, narrow, [outputs[0]!, ...wanted, outputs[2]!, outputs[3]!], {
    features: 5,
    classes: 3,
  });
  expect(exitOp.inferShape(resized, narrow)[1]!.shape).toEqual([BATCH, 3]);
  expect(exitOp.params!(resized, narrow).map((p) => p.shape)).toEqual([[5, 3], [3], [5, 1], [1]]);
});

it("maps a flattened image by period, its positions as barriers, and the heads' own spaces", () => {
  const image = [BATCH, 2, 3, 4];
  const mlp = resolved({ classes: 3, head: 'mlp', hidden: 8, pool: 'flatten' });
  const flat = channelsOn(mlp, [image]);
  expect(flat.spaces).toEqual({ features: 4, classes: 3, hidden: 8 });
  expect(flat.axes).toContainEqual({
    tensor: paramTensor('hiddenKernel'),
    axis: 0,
    space: 'features',
    period: 4,
  });
  expect(flat.axes).toContainEqual({ tensor: paramTensor('kernel'), axis: 0, space: 'hidden' });
  // Three of four channels and five of eight hidden units kept: the head's rows follow every position.
  const narrow = [{ name: 'h', dtype: 'float32' as const, shape: [BATCH, 2, 3, 3] }];
  const thinner = exitOp.resize!(mlp, narrow, [], { features: 3, classes: 3, hidden: 5 });
  expect(exitOp.params!(thinner, narrow).map((p) => p.shape)).toEqual([[18, 5], [5], [5, 3], [3]]);

  const conv = resolved({ classes: 3, head: 'conv', convFilters: 4 });
  const pooled = channelsOn(conv, [image]);
  expect(pooled.spaces).toEqual({ features: 4, classes: 3, convFilters: 4, height: 2, width: 3 });
  expect(pooled.axes).toContainEqual({ tensor: paramTensor('convKernel'), axis: 2, space: 'features' });
  expect(pooled.axes).toContainEqual({ tensor: paramTensor('kernel'), axis: 0, space: 'convFilters' });
  expect(pooled.axes).toContainEqual({ tensor: inputTensor(0), axis: 1, space: 'height', mixes: true });
  const flatConv = channelsOn({ ...conv, pool: 'flatten' }, [image]);
  expect(flatConv.axes).toContainEqual({
    tensor: paramTensor('kernel'),
    axis: 0,
    space: 'convFilters',
    period: 4,
  });
  expect(flatConv.axes.some((a) => a.space === 'height' || a.space === 'width')).toBe(false);
  const fewer = exitOp.resize!(conv, narrow, [], { features: 3, classes: 3, convFilters: 2 });
  expect(exitOp.params!(fewer, narrow).map((p) => p.shape)).toEqual([[3, 3, 3, 2], [2], [2, 3], [3]]);
});

it('ties a sequence position to every per-position output and the state input', () => {
  const { spaces, axes } = channelsOn(resolved({ classes: 3 }), [
    [BATCH, 5, 6],
    [BATCH, 5, 2],
  ]);
  expect(spaces).toEqual({ features: 6, classes: 3, time: 5 });
  expect(axes.filter((a) => a.space === 'time').map((a) => [a.tensor, a.axis])).toEqual([
    [inputTensor(0), 1],
    [outputTensor(0), 1],
    [outputTensor(1), 1],
    [outputTensor(2), 1],
    [outputTensor(3), 1],
    [inputTensor(1), 1],
  ]);
  // The last axis of the state, a (class, count) pair, holds no channels.
  expect(axes).not.toContainEqual(expect.objectContaining({ tensor: inputTensor(1), axis: 2 }));
});
