import * as tf from '@tensorflow/tfjs-core';
import { type ChannelAxis, inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import type { Attrs, Dim, ValueInfo } from '../../ir.js';
import { defineOp, type ParamSpec } from '../../op.js';
import { activationFlops } from '../basic/activation.js';
import { dropoutMask } from '../basic/dropout.js';
import { linear } from '../basic/linear.js';
import { batchMatMul } from './batched-matmul.js';

/** Attributes of {@link multiHeadAttention}. */
export interface MultiHeadAttentionAttrs extends Attrs {
  numHeads: number;
  keyDim: number;
  valueDim: number | null;
  useBias: boolean;
  causal: boolean;
  dropout: number;
}

/** Added to masked attention logits before the softmax, as Keras does for float32. */
const MASKED_LOGIT = -1e9;

function describe(dims: readonly Dim[]): string {
  return `[${dims.join(', ')}]`;
}

/** Checks one [batch, time, features] input and returns its dims; the feature size must be known. */
function sequenceDims(info: ValueInfo | undefined, name: string): [Dim, Dim, number] {
  if (info === undefined || info.shape.length !== 3) {
    throw new Error(`${name} must have shape [batch, time, features], got ${describe(info?.shape ?? [])}`);
  }
  const [batch, time, features] = info.shape as [Dim, Dim, Dim];
  if (typeof features !== 'number') {
    throw new Error(`${name} needs a known feature size (last dimension), got '${features}'`);
  }
  return [batch, time, features];
}

function sameWhenKnown(a: Dim, b: Dim): boolean {
  return typeof a !== 'number' || typeof b !== 'number' || a === b;
}

/** Checks query, value and optional key; returns their feature sizes. */
function checkInputs(inputs: readonly ValueInfo[]): { dq: number; dv: number; dk: number; query: Dim[] } {
  const query = sequenceDims(inputs[0], 'query');
  const value = sequenceDims(inputs[1], 'value');
  const key = inputs[2] === undefined ? value : sequenceDims(inputs[2], 'key');
  if (!sameWhenKnown(query[0], value[0]) || !sameWhenKnown(query[0], key[0])) {
    throw new Error(
      `query, value and key must share the batch dimension, got ${query[0]}, ${value[0]} and ${key[0]}`,
    );
  }
  if (!sameWhenKnown(key[1], value[1])) {
    throw new Error(`key and value must have the same length, got ${key[1]} and ${value[1]}`);
  }
  return { dq: query[2], dv: value[2], dk: key[2], query };
}

/**
 * Glorot-uniform for a kernel of shape `shape`, with fans computed as Keras does for kernels of
 * rank above 2: the leading axes form the receptive field, the last two are input and output.
 * The initialiser of `core.MultiHeadAttention`'s kernels (`[d, heads, dim]`, `[heads, dim, d]`),
 * for attention ops that lay their parameters out the same way.
 */
export function kerasGlorot(shape: number[]): ParamSpec['init'] {
  const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  return { kind: 'glorotUniform', fanIn: shape.at(-2)! * receptive, fanOut: shape.at(-1)! * receptive };
}

/**
 * Projects [batch, time, d] with a [d, heads, dim] kernel and splits heads: [batch * heads, time,
 * dim], or [batch * heads, dim, time] with `transposed` (keys, ready for `q @ k^T` in one transpose).
 */
function projectHeads(
  x: tf.Tensor,
  kernel: tf.Tensor,
  bias: tf.Tensor | undefined,
  transposed = false,
): tf.Tensor3D {
  const [batch, time, features] = x.shape as [number, number, number];
  const [, heads, dim] = kernel.shape as [number, number, number];
  const projected = linear(
    x,
    tf.reshape(kernel, [features, heads * dim]),
    bias === undefined ? undefined : tf.reshape(bias, [heads * dim]),
  );
  const perHead = tf.reshape(projected, [batch, time, heads, dim]);
  return transposed
    ? tf.reshape(tf.transpose(perHead, [0, 2, 3, 1]), [batch * heads, dim, time])
    : tf.reshape(tf.transpose(perHead, [0, 2, 1, 3]), [batch * heads, time, dim]);
}

/** Additive mask [tq, tv]: 0 where key j may be attended from query i (j <= i), else very negative. */
/** Query i (at position `past + i`) sees keys j <= past + i: the first `past` keys are cached ones. */
function causalMask(tq: number, tv: number, past = 0): tf.Tensor2D {
  const values = new Float32Array(tq * tv);
  for (let i = 0; i < tq; i++) {
    for (let j = past + i + 1; j < tv; j++) values[i * tv + j] = MASKED_LOGIT;
  }
  return tf.tensor2d(values, [tq, tv]);
}

/**
 * `core.MultiHeadAttention`: scaled dot-product attention over several heads, as Keras'
 * `MultiHeadAttention`. Inputs `query` [batch, tq, dq], `value` [batch, tv, dv] and optional `key`
 * [batch, tv, dk] (defaults to `value`); output [batch, tq, dq]. Each head attends with
 * `softmax(q k^T / sqrt(keyDim)) v`; `causal` lets query i see keys j <= i only; `dropout` zeroes
 * attention probabilities in training (mask drawn from the node's seeded generator, one draw per
 * probability in [batch, heads, tq, tv] row-major order). Params mirror Keras: `queryKernel`
 * [dq, heads, keyDim], `keyKernel` [dk, heads, keyDim], `valueKernel` [dv, heads, valueDim],
 * `outputKernel` [heads, valueDim, dq], and with `useBias` `queryBias`, `keyBias` [heads, keyDim],
 * `valueBias` [heads, valueDim], `outputBias` [dq].
 *
 * In a session (`model.session()`), causal attention keeps a KV cache: each run's keys and values
 * are appended to those of the earlier runs, and its queries attend to all of them (query i at
 * position past + i sees keys up to past + i), so decoding one position per run gives what a run
 * over the whole sequence gives.
 *
 * Channels: the model dimension, space `query` (the query's and the output's features,
 * `queryKernel` axis 0, `outputKernel` axis 2, `outputBias`), and the input features of the
 * other projections, space `value` (the value's features, `valueKernel` axis 0, and `keyKernel`
 * axis 0 when the key is the value) and space `key` (the key's features, `keyKernel` axis 0).
 * The heads tie together: space `heads` (axis 1 of the three input projections, axis 0 of their
 * biases and of `outputKernel`): removing a head removes its slices everywhere. Space `valueDim`
 * (each head's value size: `valueKernel` axis 2, `valueBias` axis 1, `outputKernel` axis 1) and
 * space `keyDim` (each head's query/key size, axis 2 of both kernels, axis 1 of both biases;
 * mixing, since the scores are scaled by 1/sqrt(keyDim)). `resize` sets `numHeads`, `keyDim` and
 * `valueDim` from the new space sizes.
 */
export const multiHeadAttention = defineOp<MultiHeadAttentionAttrs>({
  type: 'core.MultiHeadAttention',
  version: 1,
  description: 'Multi-head scaled dot-product attention of a query sequence over a key/value sequence.',
  attrs: {
    numHeads: { kind: 'int', min: 1, doc: 'number of attention heads' },
    keyDim: { kind: 'int', min: 1, doc: 'size of each head for query and key' },
    valueDim: { kind: 'int', min: 1, default: null, doc: 'size of each head for value (null: keyDim)' },
    useBias: { kind: 'bool', default: true, doc: 'add biases to the four projections' },
    causal: { kind: 'bool', default: false, doc: 'query position i attends to key positions j <= i only' },
    dropout: {
      kind: 'float',
      min: 0,
      max: 1,
      default: 0,
      doc: 'dropout rate on attention probabilities in training, below 1',
    },
  },
  inputs: { min: 2, max: 3 },
  params(attrs, inputs) {
    const { dq, dv, dk } = checkInputs(inputs);
    const { numHeads: heads, keyDim } = attrs;
    const valueDim = attrs.valueDim ?? keyDim;
    const kernel = (name: string, shape: number[]): ParamSpec => ({ name, shape, init: kerasGlorot(shape) });
    const bias = (name: string, shape: number[]): ParamSpec[] =>
      attrs.useBias ? [{ name, shape, init: { kind: 'zeros' } }] : [];
    return [
      kernel('queryKernel', [dq, heads, keyDim]),
      ...bias('queryBias', [heads, keyDim]),
      kernel('keyKernel', [dk, heads, keyDim]),
      ...bias('keyBias', [heads, keyDim]),
      kernel('valueKernel', [dv, heads, valueDim]),
      ...bias('valueBias', [heads, valueDim]),
      kernel('outputKernel', [heads, valueDim, dq]),
      ...bias('outputBias', [dq]),
    ];
  },
  inferShape(attrs, inputs) {
    const { query } = checkInputs(inputs);
    if (attrs.dropout >= 1) throw new Error(`dropout must be below 1, got ${attrs.dropout}`);
    return [{ shape: query, dtype: 'float32' }];
  },
  channels(attrs, inputs) {
    const { dq, dv, dk } = checkInputs(inputs);
    const hasKey = inputs[2] !== undefined;
    const axes: ChannelAxis[] = [
      { tensor: inputTensor(0), axis: 2, space: 'query' },
      { tensor: outputTensor(0), axis: 2, space: 'query' },
      { tensor: paramTensor('queryKernel'), axis: 0, space: 'query' },
      { tensor: paramTensor('outputKernel'), axis: 2, space: 'query' },
      ...(attrs.useBias ? [{ tensor: paramTensor('outputBias'), axis: 0, space: 'query' }] : []),
      { tensor: inputTensor(1), axis: 2, space: 'value' },
      { tensor: paramTensor('valueKernel'), axis: 0, space: 'value' },
      // Without a key input the keys are projected from the value.
      { tensor: paramTensor('keyKernel'), axis: 0, space: hasKey ? 'key' : 'value' },
      ...(hasKey ? [{ tensor: inputTensor(2), axis: 2, space: 'key' }] : []),
    ];
    const bias = (name: string, axis: number, space: string, mixes = false): ChannelAxis[] =>
      attrs.useBias ? [{ tensor: paramTensor(name), axis, space, ...(mixes ? { mixes } : {}) }] : [];
    for (const name of ['queryKernel', 'keyKernel', 'valueKernel']) {
      axes.push({ tensor: paramTensor(name), axis: 1, space: 'heads' });
    }
    axes.push(
      ...bias('queryBias', 0, 'heads'),
      ...bias('keyBias', 0, 'heads'),
      ...bias('valueBias', 0, 'heads'),
      { tensor: paramTensor('outputKernel'), axis: 0, space: 'heads' },
      { tensor: paramTensor('queryKernel'), axis: 2, space: 'keyDim', mixes: true },
      { tensor: paramTensor('keyKernel'), axis: 2, space: 'keyDim', mixes: true },
      ...bias('queryBias', 1, 'keyDim', true),
      ...bias('keyBias', 1, 'keyDim', true),
      { tensor: paramTensor('valueKernel'), axis: 2, space: 'valueDim' },
      ...bias('valueBias', 1, 'valueDim'),
      { tensor: paramTensor('outputKernel'), axis: 1, space: 'valueDim' },
    );
    const heads = { heads: attrs.numHeads, keyDim: attrs.keyDim, valueDim: attrs.valueDim ?? attrs.keyDim };
    return { spaces: { query: dq, value: dv, ...(hasKey ? { key: dk } : {}), ...heads }, axes };
  },
  resize(attrs, _inputs, _outputs, spaces) {
    const keyDim = spaces.keyDim ?? attrs.keyDim;
    const valueDim = spaces.valueDim ?? attrs.valueDim ?? attrs.keyDim;
    return {
      ...attrs,
      numHeads: spaces.heads ?? attrs.numHeads,
      keyDim,
      // null keeps meaning "as keyDim" only while the two stay equal.
      valueDim: attrs.valueDim === null && valueDim === keyDim ? null : valueDim,
    };
  },
  sessionState(attrs) {
    if (!attrs.causal) return [];
    // [batch * heads, keyDim, past] and [batch * heads, past, valueDim]: the layouts the scores use.
    return [
      { name: 'keys', kind: 'tensor', dtype: 'float32', shape: ['rows', attrs.keyDim, 'past'] },
      {
        name: 'values',
        kind: 'tensor',
        dtype: 'float32',
        shape: ['rows', 'past', attrs.valueDim ?? attrs.keyDim],
      },
    ];
  },
  forward(ctx, inputs) {
    const [query, value] = inputs as [tf.Tensor, tf.Tensor];
    const key = inputs[2] ?? value;
    const { numHeads: heads, keyDim, causal, dropout } = ctx.attrs;
    const valueDim = ctx.attrs.valueDim ?? keyDim;
    const p = ctx.params;
    // In a session, causal attention keeps its keys and values: a run attends to every earlier
    // run's positions too (incremental decoding), and stores the longer cache for the next.
    const session = causal ? ctx.session : undefined;
    const cachedKeys = session?.read('keys') as tf.Tensor | undefined;
    const cachedValues = session?.read('values') as tf.Tensor | undefined;
    const { output, keys, values } = tf.tidy(() => {
      const [batch, tq, dq] = query.shape as [number, number, number];
      const q = projectHeads(query, p.queryKernel!, p.queryBias);
      let kT: tf.Tensor = projectHeads(key, p.keyKernel!, p.keyBias, true);
      let v: tf.Tensor = projectHeads(value, p.valueKernel!, p.valueBias);
      const past = cachedKeys?.shape[2] ?? 0;
      if (cachedKeys !== undefined && cachedValues !== undefined) {
        kT = tf.concat([cachedKeys, kT], 2);
        v = tf.concat([cachedValues, v], 1);
      }
      const tv = v.shape[1]!;
      let logits: tf.Tensor = batchMatMul(tf.mul(q, 1 / Math.sqrt(keyDim)), kT as tf.Tensor3D);
      if (causal) logits = tf.add(logits, causalMask(tq, tv, past));
      let probs = tf.softmax(logits);
      if (ctx.training && dropout > 0) probs = tf.mul(probs, dropoutMask(ctx.rng(), dropout, probs.shape));
      const attended = batchMatMul(probs as tf.Tensor3D, v as tf.Tensor3D);
      const merged = tf.reshape(
        tf.transpose(tf.reshape(attended, [batch, heads, tq, valueDim]), [0, 2, 1, 3]),
        [batch, tq, heads * valueDim],
      );
      return {
        output: linear(merged, tf.reshape(p.outputKernel!, [heads * valueDim, dq]), p.outputBias),
        ...(session === undefined ? {} : { keys: kT, values: v }),
      };
    });
    if (session !== undefined) {
      session.write('keys', keys!);
      session.write('values', values!);
    }
    return [output];
  },
  flops(attrs, inputs) {
    const [batch, tq, dq] = inputs[0] as [number, number, number];
    const [, tv, dv] = inputs[1] as [number, number, number];
    const dk = (inputs[2] ?? inputs[1])![2]!;
    const { numHeads: heads, keyDim } = attrs;
    const valueDim = attrs.valueDim ?? keyDim;
    const queryWidth = heads * keyDim;
    const valueWidth = heads * valueDim;
    const projections =
      2 * batch * (tq * dq * queryWidth + tv * dk * queryWidth + tv * dv * valueWidth + tq * valueWidth * dq);
    const biases = attrs.useBias
      ? batch * (tq * queryWidth + tv * queryWidth + tv * valueWidth + tq * dq)
      : 0;
    const scaling = batch * tq * queryWidth;
    const scores = batch * heads * tq * tv;
    const attention = 2 * scores * keyDim + 2 * scores * valueDim;
    const softmax = scores * (activationFlops('softmax') + (attrs.causal ? 1 : 0));
    return projections + biases + scaling + attention + softmax;
  },
});
