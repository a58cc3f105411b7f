import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  isGpuBackend,
  opParams,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import { type Attrs, BATCH, type ValueInfo } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { createOpContext } from '../../op-context.js';
import { createRng } from '../../random.js';
import { type MultiHeadAttentionAttrs, multiHeadAttention } from './multi-head-attention.js';

interface Arrays {
  [name: string]: Float32Array;
}

/**
 * Naive Keras MultiHeadAttention on plain row-major arrays. `multipliers` (row-major
 * [batch, heads, tq, tv]) scale the attention probabilities, as dropout does in training.
 */
function referenceAttention(
  x: { query: Float32Array; value: Float32Array; key: Float32Array },
  dims: { batch: number; tq: number; tv: number; dq: number; dv: number; dk: number },
  w: Arrays,
  attrs: MultiHeadAttentionAttrs,
  multipliers?: Float32Array,
): Float32Array {
  const { batch, tq, tv, dq, dv, dk } = dims;
  const heads = attrs.numHeads;
  const kd = attrs.keyDim;
  const vd = attrs.valueDim ?? kd;
  const project =
    (input: Float32Array, width: number, kernel: string, bias: string, dim: number) =>
    (b: number, t: number, h: number, e: number) => {
      let s = w[bias]?.[h * dim + e] ?? 0;
      for (let c = 0; c < width; c++) {
        s +=
          input[(b * (input.length / batch / width) + t) * width + c]! *
          w[kernel]![(c * heads + h) * dim + e]!;
      }
      return s;
    };
  const q = project(x.query, dq, 'queryKernel', 'queryBias', kd);
  const k = project(x.key, dk, 'keyKernel', 'keyBias', kd);
  const v = project(x.value, dv, 'valueKernel', 'valueBias', vd);
  const out = new Float32Array(batch * tq * dq);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < tq; t++) {
      const merged = new Float64Array(heads * vd);
      for (let h = 0; h < heads; h++) {
        const allowed = Array.from({ length: tv }, (_, s) => !attrs.causal || s <= t);
        const logits = Array.from({ length: tv }, (_, s) => {
          let dot = 0;
          for (let e = 0; e < kd; e++) dot += q(b, t, h, e) * k(b, s, h, e);
          return dot / Math.sqrt(kd);
        });
        const top = Math.max(...logits.filter((_, s) => allowed[s]));
        const exps = logits.map((l, s) => (allowed[s] ? Math.exp(l - top) : 0));
        const total = exps.reduce((a, c) => a + c, 0);
        for (let s = 0; s < tv; s++) {
          const p = (exps[s]! / total) * (multipliers?.[((b * heads + h) * tq + t) * tv + s] ?? 1);
          for (let e = 0; e < vd; e++) merged[h * vd + e]! += p * v(b, s, h, e);
        }
      }
      for (let d = 0; d < dq; d++) {
        let s = w.outputBias?.[d] ?? 0;
        for (let m = 0; m < heads * vd; m++) s += merged[m]! * w.outputKernel![m * dq + d]!;
        out[(b * tq + t) * dq + d] = s;
      }
    }
  }
  return out;
}

async function arrays(tensors: Record<string, tf.Tensor>): Promise<Arrays> {
  const entries = await Promise.all(
    Object.entries(tensors).map(async ([name, t]) => [name, (await t.data()) as Float32Array] as const),
  );
  return Object.fromEntries(entries);
}

interface Case {
  name: string;
  attrs: Attrs;
  shapes: { query: number[]; value: number[]; key?: number[] };
}

const cases: Case[] = [
  { name: 'defaults', attrs: { numHeads: 2, keyDim: 3 }, shapes: { query: [2, 3, 4], value: [2, 4, 5] } },
  {
    name: 'causal, separate key, valueDim 2, no bias',
    attrs: { numHeads: 2, keyDim: 3, valueDim: 2, causal: true, useBias: false },
    shapes: { query: [2, 3, 4], value: [2, 4, 5], key: [2, 4, 6] },
  },
  {
    name: 'causal with a shorter memory, 3 heads',
    attrs: { numHeads: 3, keyDim: 2, causal: true },
    shapes: { query: [2, 4, 4], value: [2, 2, 3] },
  },
];

function caseInputs(c: Case): tf.Tensor[] {
  const { query, value, key } = c.shapes;
  return [
    seededUniform(query, { seed: 1 }),
    seededUniform(value, { seed: 2 }),
    ...(key ? [seededUniform(key, { seed: 3 })] : []),
  ];
}

async function expected(
  c: Case,
  inputs: tf.Tensor[],
  params: Record<string, tf.Tensor>,
  multipliers?: Float32Array,
): Promise<Float32Array> {
  const [query, value, key = value] = inputs as [tf.Tensor, tf.Tensor, tf.Tensor?];
  const x = await arrays({ query, value, key });
  const dims = {
    batch: query.shape[0]!,
    tq: query.shape[1]!,
    dq: query.shape[2]!,
    tv: value.shape[1]!,
    dv: value.shape[2]!,
    dk: key.shape[2]!,
  };
  const attrs = resolveAttrs(multiHeadAttention, c.attrs, 'mha');
  return referenceAttention(
    { query: x.query!, value: x.value!, key: x.key! },
    dims,
    await arrays(params),
    attrs,
    multipliers,
  );
}

describeEachBackend('core.MultiHeadAttention', (backend) => {
  // Elements probed per tensor: software WebGPU takes ~0.3 s per finite difference of attention,
  // so GPU backends probe one element of every tensor.
  const samples = isGpuBackend(backend) ? 1 : 8;

  guardLeaks();

  for (const c of cases) {
    it(`matches a naive reference: ${c.name}`, async () => {
      const inputs = caseInputs(c);
      const params = opParams(multiHeadAttention, c.attrs, inputs, 5);
      const { outputs } = await runOp(multiHeadAttention, { attrs: c.attrs, inputs, params });
      await expectClose(outputs[0]!, await expected(c, inputs, params), { label: c.name });
      tf.dispose([...outputs, ...inputs, ...Object.values(params)]);
    });
  }

  it('drops attention probabilities in training only, with the seeded mask', async () => {
    const c: Case = { ...cases[1]!, attrs: { ...cases[1]!.attrs, dropout: 0.4 } };
    const inputs = caseInputs(c);
    const params = opParams(multiHeadAttention, c.attrs, inputs, 5);
    const attrs = resolveAttrs(multiHeadAttention, c.attrs, 'mha');
    const { context } = createOpContext({
      node: { name: 'mha', op: multiHeadAttention.type, inputs: [], outputs: [], attrs: c.attrs },
      attrs,
      params,
      state: {},
      training: true,
      options: {},
      rows: { batchSize: 2, indices: Int32Array.from([0, 1]) },
      seed: 1,
    });
    const maskSeed = 77;
    const trained = multiHeadAttention.forward({ ...context, rng: () => createRng(maskSeed) }, inputs);
    const [trainedOut] = trained as tf.Tensor[];
    // One draw per probability of [batch 2, heads 2, tq 3, tv 4]; kept ones scale by 1 / 0.6.
    const rng = createRng(maskSeed);
    const multipliers = Float32Array.from({ length: 2 * 2 * 3 * 4 }, () => (rng.next() >= 0.4 ? 1 / 0.6 : 0));
    expect(multipliers).toContain(0);
    await expectClose(trainedOut!, await expected(c, inputs, params, multipliers), { label: 'training' });
    const { outputs } = await runOp(multiHeadAttention, { attrs: c.attrs, inputs, params });
    await expectClose(outputs[0]!, await expected(c, inputs, params), { label: 'inference' });
    tf.dispose([trainedOut!, ...outputs, ...inputs, ...Object.values(params)]);
  });

  // GPU backends check the richer case below only: each finite difference costs ~0.3 s there.
  it.skipIf(isGpuBackend(backend))('has correct gradients for inputs and params (defaults)', async () => {
    const c = cases[0]!;
    const inputs = caseInputs(c);
    await checkOpGradients(multiHeadAttention, { attrs: c.attrs, inputs });
    tf.dispose(inputs);
  });

  it('has correct gradients with a key, causal mask and dropout in training', async () => {
    const c = cases[1]!;
    const inputs = caseInputs(c);
    await checkOpGradients(
      multiHeadAttention,
      {
        attrs: { ...c.attrs, useBias: true, dropout: 0.3 },
        inputs,
        training: true,
      },
      { samples },
    );
    tf.dispose(inputs);
  });
});

describe('core.MultiHeadAttention shapes, params and flops', () => {
  const info = (shape: ValueInfo['shape']): ValueInfo => ({ name: 'v', dtype: 'float32', shape });
  const attrs = resolveAttrs(multiHeadAttention, { numHeads: 2, keyDim: 3, valueDim: 4 }, 'mha');

  it('infers symbolic batch and lengths', () => {
    const inputs = [info([BATCH, 'tq', 8]), info([BATCH, 'tv', 5]), info([BATCH, 'tv', 6])];
    expect(multiHeadAttention.inferShape(attrs, inputs)).toEqual([
      { shape: [BATCH, 'tq', 8], dtype: 'float32' },
    ]);
  });

  it('declares Keras-shaped params with Keras fans', () => {
    const params = multiHeadAttention.params!(attrs, [
      info([BATCH, 3, 8]),
      info([BATCH, 4, 5]),
      info([BATCH, 4, 6]),
    ]);
    expect(params.map((p) => [p.name, p.shape])).toEqual([
      ['queryKernel', [8, 2, 3]],
      ['queryBias', [2, 3]],
      ['keyKernel', [6, 2, 3]],
      ['keyBias', [2, 3]],
      ['valueKernel', [5, 2, 4]],
      ['valueBias', [2, 4]],
      ['outputKernel', [2, 4, 8]],
      ['outputBias', [8]],
    ]);
    // Keras treats the leading axis of a rank-3 kernel as a receptive field.
    expect(params[0]!.init).toEqual({ kind: 'glorotUniform', fanIn: 16, fanOut: 24 });
    expect(params[6]!.init).toEqual({ kind: 'glorotUniform', fanIn: 8, fanOut: 16 });
    expect(params[1]!.init).toEqual({ kind: 'zeros' });
  });

  it('rejects bad shapes and a dropout of 1', () => {
    expect(() => multiHeadAttention.inferShape(attrs, [info([BATCH, 8]), info([BATCH, 4, 5])])).toThrow(
      /query must have shape \[batch, time, features\], got \[batch, 8\]/,
    );
    expect(() =>
      multiHeadAttention.inferShape(attrs, [info([BATCH, 3, 8]), info([BATCH, 4, 5]), info([BATCH, 3, 6])]),
    ).toThrow(/key and value must have the same length, got 3 and 4/);
    expect(() => multiHeadAttention.inferShape(attrs, [info([2, 3, 8]), info([3, 4, 5])])).toThrow(
      /share the batch dimension/,
    );
    expect(() => multiHeadAttention.inferShape(attrs, [info([BATCH, 3, 'd']), info([BATCH, 4, 5])])).toThrow(
      /query needs a known feature size/,
    );
    const full = resolveAttrs(multiHeadAttention, { numHeads: 2, keyDim: 3, dropout: 1 }, 'mha');
    expect(() => multiHeadAttention.inferShape(full, [info([BATCH, 3, 8]), info([BATCH, 4, 5])])).toThrow(
      /dropout must be below 1/,
    );
  });

  it('counts projections, scores, softmax and the weighted sum', () => {
    // batch 1, tq 2, tv 3, dq 4, dv 5, dk 5 (key = value), heads 2, keyDim 3, valueDim 4.
    const projections = 2 * (2 * 4 * 6 + 3 * 5 * 6 + 3 * 5 * 8 + 2 * 8 * 4);
    const biases = 2 * 6 + 3 * 6 + 3 * 8 + 2 * 4;
    const scaling = 2 * 6;
    const scores = 2 * 2 * 3;
    const attention = 2 * scores * 3 + 2 * scores * 4;
    const softmax = scores * 5;
    expect(
      multiHeadAttention.flops(
        attrs,
        [
          [1, 2, 4],
          [1, 3, 5],
        ],
        [[1, 2, 4]],
      ),
    ).toBe(projections + biases + scaling + attention + softmax);
  });
});

describe('core.MultiHeadAttention channels', () => {
  const info = (shape: ValueInfo['shape']): ValueInfo => ({ name: 'v', dtype: 'float32', shape });
  const attrs = resolveAttrs(multiHeadAttention, { numHeads: 2, keyDim: 3, valueDim: 4 }, 'mha');

  it('ties the query features to the output and the projections that read or write them', () => {
    const inputs = [info([BATCH, 'tq', 8]), info([BATCH, 'tv', 5]), info([BATCH, 'tv', 6])];
    expect(multiHeadAttention.channels!(attrs, inputs, [inputs[0]!])).toEqual({
      spaces: { query: 8, value: 5, key: 6, heads: 2, keyDim: 3, valueDim: 4 },
      axes: expect.arrayContaining([
        { tensor: inputTensor(0), axis: 2, space: 'query' },
        { tensor: outputTensor(0), axis: 2, space: 'query' },
        { tensor: paramTensor('queryKernel'), axis: 0, space: 'query' },
        { tensor: paramTensor('outputKernel'), axis: 2, space: 'query' },
        { tensor: paramTensor('outputBias'), axis: 0, space: 'query' },
        { tensor: inputTensor(1), axis: 2, space: 'value' },
        { tensor: paramTensor('valueKernel'), axis: 0, space: 'value' },
        { tensor: paramTensor('keyKernel'), axis: 0, space: 'key' },
        { tensor: inputTensor(2), axis: 2, space: 'key' },
      ]),
    });
  });

  it('ties each head across the four projections, and its key and value sizes', () => {
    const inputs = [info([BATCH, 'tq', 8]), info([BATCH, 'tv', 5])];
    const { axes } = multiHeadAttention.channels!(attrs, inputs, [inputs[0]!]);
    const on = (space: string) =>
      axes
        .filter((a) => a.space === space)
        .map((a) => `${'name' in a.tensor ? a.tensor.name : ''}:${a.axis}${a.mixes ? '*' : ''}`);
    expect(on('heads')).toEqual([
      'queryKernel:1',
      'keyKernel:1',
      'valueKernel:1',
      'queryBias:0',
      'keyBias:0',
      'valueBias:0',
      'outputKernel:0',
    ]);
    // The scores are scaled by 1/sqrt(keyDim): removing a key dimension changes the others' weight.
    expect(on('keyDim')).toEqual(['queryKernel:2*', 'keyKernel:2*', 'queryBias:1*', 'keyBias:1*']);
    expect(on('valueDim')).toEqual(['valueKernel:2', 'valueBias:1', 'outputKernel:1']);
  });

  it('resizes heads, key and value sizes from the new space sizes', () => {
    const inputs = [info([BATCH, 'tq', 8]), info([BATCH, 'tv', 5])];
    const spaces = { query: 8, value: 5, heads: 1, keyDim: 3, valueDim: 2 };
    const resized = multiHeadAttention.resize!(attrs, inputs, [inputs[0]!], spaces);
    expect(resized).toEqual({ ...attrs, numHeads: 1, valueDim: 2 });
    expect(multiHeadAttention.params!(resized, inputs).find((p) => p.name === 'outputKernel')!.shape).toEqual(
      [1, 2, 8],
    );
    // valueDim null follows keyDim only while they stay equal.
    const same = resolveAttrs(multiHeadAttention, { numHeads: 2, keyDim: 3 }, 'mha');
    expect(
      multiHeadAttention.resize!(same, inputs, [inputs[0]!], { ...spaces, valueDim: 3 }).valueDim,
    ).toBeNull();
    expect(
      multiHeadAttention.resize!(same, inputs, [inputs[0]!], { ...spaces, keyDim: 2, valueDim: 3 }).valueDim,
    ).toBe(3);
  });

  it('projects the keys from the value features when there is no key input', () => {
    const inputs = [info([BATCH, 'tq', 8]), info([BATCH, 'tv', 5])];
    const { spaces, axes } = multiHeadAttention.channels!(attrs, inputs, [inputs[0]!]);
    expect(spaces).toEqual({ query: 8, value: 5, heads: 2, keyDim: 3, valueDim: 4 });
    expect(axes.find((a) => a.tensor.kind === 'param' && a.tensor.name === 'keyKernel')!.space).toBe('value');
  });

  it('shrinks exactly the declared param axes when the features shrink, with the same attributes', () => {
    const params = (q: number, v: number) =>
      multiHeadAttention.params!(attrs, [info([BATCH, 3, q]), info([BATCH, 4, v])]).map((p) => p.shape);
    expect(params(7, 4)).toEqual([[7, 2, 3], [2, 3], [4, 2, 3], [2, 3], [4, 2, 4], [2, 4], [2, 4, 7], [7]]);
    expect(params(8, 5).map((shape, i) => shape.map((d, axis) => d - params(7, 4)[i]![axis]!))).toEqual([
      [1, 0, 0],
      [0, 0],
      [1, 0, 0],
      [0, 0],
      [1, 0, 0],
      [0, 0],
      [0, 0, 1],
      [1],
    ]);
  });
});
