// Small models and plain-tfjs references the tests of this package share. Not exported from the package.
import {
  type BackendName,
  createModel,
  createOpContext,
  createRuntime,
  type Graph,
  GraphBuilder,
  type Model,
  resolveAttrs,
} from '@dynn/core';
import { activateBackend, isGpuBackend, seededUniform, testBackends } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeEach, describe } from 'vitest';
import type { Pattern } from './pattern.js';
import { randomKeyBlocks } from './pattern.js';
import { sparseAttention } from './plugin.js';
import { relativeBucket, type ScoreMod } from './score-mods.js';
import { addSparseAttention, type SparseAttentionOptions } from './sparse-attention-layer.js';
import { type SparseAttentionAttrs, sparseAttentionOp } from './sparse-attention-op.js';

/** A runtime with the sparse-attention plugin. */
export const runtime = createRuntime({ plugins: [sparseAttention()] });

/** The data a batch row gives a pattern: padding, document ids, prefix length. */
export interface RowData {
  /** 1 a token, 0 padding, per position. */
  padding?: number[];
  /** Document id per position. */
  documents?: number[];
  /** Prefix length. */
  prefix?: number;
}

/** Block pairs `[blocks, blocks]` of a DeepSpeed block layout, built the way DeepSpeed's loops build it. */
function deepSpeedLayout(p: Pattern, blocks: number): boolean[][] {
  const layout = Array.from({ length: blocks }, () => new Array<boolean>(blocks).fill(false));
  const set = (r: number, c: number) => {
    if (r < blocks && c < blocks) layout[r]![c] = true;
  };
  const sliding = (windowBlocks: number) => {
    const w = Math.floor(windowBlocks / 2);
    for (let r = 0; r < blocks; r++) {
      for (let c = Math.max(0, r - w); c < Math.min(r + w + 1, blocks); c++) set(r, c);
    }
  };
  const random = (seed: number, count: number) => {
    for (let r = 0; r < blocks; r++) for (const c of randomKeyBlocks(seed, count, r, blocks)) set(r, c);
  };
  const local = (start: number, size: number) => {
    const end = Math.min(start + size, blocks);
    for (let r = start; r < end; r++) for (let c = start; c < end; c++) set(r, c);
  };
  switch (p.type) {
    case 'random':
      random(p.seed, p.blocks);
      break;
    case 'fixed': {
      for (let i = 0; i < blocks; i += p.localBlocks) local(i, p.localBlocks);
      const first = p.localBlocks - p.globalBlocks;
      const end = blocks - (blocks % p.localBlocks);
      for (let i = first; i < end; i += p.localBlocks) {
        for (let r = 0; r < blocks; r++) for (let c = i; c < i + p.globalBlocks; c++) set(r, c);
      }
      if (end < blocks) {
        const start = Math.min(end + first, blocks - p.globalBlocks);
        for (let r = 0; r < blocks; r++) for (let c = start; c < start + p.globalBlocks; c++) set(r, c);
      }
      break;
    }
    case 'bigbird':
      random(p.seed, p.randomBlocks);
      sliding(p.windowBlocks);
      for (let g = 0; g < p.globalBlocks; g++) {
        for (let i = 0; i < blocks; i++) {
          set(g, i);
          set(i, g);
        }
      }
      break;
    case 'longformer':
      sliding(p.windowBlocks);
      for (const g of p.globalBlocks) {
        for (let i = 0; i < blocks; i++) {
          set(g, i);
          set(i, g);
        }
      }
      break;
    case 'variable': {
      let start = 0;
      for (const size of p.localWindows) {
        local(start, size);
        start += size;
      }
      for (; start < blocks; start += p.localWindows.at(-1)!) local(start, p.localWindows.at(-1)!);
      for (const g of p.globalBlocks) for (let r = 0; r < blocks; r++) set(r, g);
      break;
    }
    default:
      throw new Error(`${p.type} is not a block layout`);
  }
  return layout;
}

/**
 * The reference keep matrix `[n, n]` (query-major) of a pattern for one row, from each
 * primitive's definition, padding included: what the dense reference masks with.
 */
export function referenceKeep(p: Pattern, n: number, blockSize: number, row: RowData = {}): Uint8Array {
  const blocks = Math.ceil(n / blockSize);
  const keep = (q: Pattern): ((i: number, j: number) => boolean) => {
    switch (q.type) {
      case 'full':
        return () => true;
      case 'causal':
        return (i, j) => j <= i;
      case 'window':
        return (i, j) => j >= i - q.before && j <= i + q.after;
      case 'dilated':
        return (i, j) => j >= i - q.before && j <= i + q.after && Math.abs(i - j) % q.dilation === 0;
      case 'global':
        return (i, j) => q.tokens.includes(i) || q.tokens.includes(j);
      case 'document':
        return (i, j) => row.documents![i] === row.documents![j];
      case 'prefix-lm': {
        const prefix = q.prefix ?? row.prefix!;
        return (i, j) => j <= i || (i < prefix && j < prefix) || j < prefix;
      }
      case 'and': {
        const parts = q.of.map(keep);
        return (i, j) => parts.every((f) => f(i, j));
      }
      case 'or': {
        const parts = q.of.map(keep);
        return (i, j) => parts.some((f) => f(i, j));
      }
      default: {
        const layout = deepSpeedLayout(q, blocks);
        return (i, j) => layout[Math.floor(i / blockSize)]![Math.floor(j / blockSize)]!;
      }
    }
  };
  const f = keep(p);
  const token = (i: number) => row.padding === undefined || row.padding[i] !== 0;
  return Uint8Array.from({ length: n * n }, (_, at) => {
    const [i, j] = [Math.floor(at / n), at % n];
    return token(i) && token(j) && f(i, j) ? 1 : 0;
  });
}

/**
 * ALiBi's slopes from the paper's closed form: `2^(-8h / n)` for `h = 1..n` with n a power of
 * two; otherwise those of the power of two below, then every other slope of the one above.
 */
function alibiReference(heads: number): number[] {
  const power = (n: number) => Array.from({ length: n }, (_, h) => 2 ** ((-8 * (h + 1)) / n));
  if (Number.isInteger(Math.log2(heads))) return power(heads);
  const closest = 2 ** Math.floor(Math.log2(heads));
  return [...power(closest), ...power(2 * closest).filter((_, i) => i % 2 === 0)].slice(0, heads);
}

/** Sizes of the reference attention. */
export interface ReferenceOptions {
  numHeads: number;
  numKvHeads?: number;
  keyDim: number;
  valueDim?: number;
  scoreMods?: ScoreMod[];
  /** Keep matrices `[n, n]`, one per batch row. */
  keep: Uint8Array[];
  /** Per row, 1 a token and 0 padding: a padded position outputs zeros. */
  padding?: number[][];
}

/**
 * Dense masked attention in plain tfjs: every `[n, n]` score computed, dropped pairs masked, the
 * softmax taken, a query that keeps no key zeroed, then the output projection. The parameters are
 * the op's, by local name.
 */
export function denseReference(
  x: tf.Tensor,
  params: Record<string, tf.Tensor>,
  o: ReferenceOptions,
): tf.Tensor {
  return tf.tidy(() => {
    const [batch, n, d] = x.shape as [number, number, number];
    const heads = o.numHeads;
    const kvHeads = o.numKvHeads ?? heads;
    const group = heads / kvHeads;
    const dk = o.keyDim;
    const dv = o.valueDim ?? dk;
    const flat = tf.reshape(x, [batch * n, d]);
    const project = (kernel: string, bias: string, count: number, dim: number) => {
      let y = tf.matMul(flat, tf.reshape(params[kernel]!, [d, count * dim]));
      if (params[bias]) y = tf.add(y, tf.reshape(params[bias]!, [count * dim]));
      return tf.transpose(tf.reshape(y, [batch, n, count, dim]), [0, 2, 1, 3]);
    };
    const q = project('queryKernel', 'queryBias', heads, dk);
    // Each query head h uses key/value head floor(h / group) (slices and a concat: wasm has no
    // gradient for tf.gather).
    const expand = (t: tf.Tensor) =>
      tf.concat(
        Array.from({ length: heads }, (_, h) => tf.slice(t, [0, Math.floor(h / group)], [-1, 1])),
        1,
      );
    const k = expand(project('keyKernel', 'keyBias', kvHeads, dk));
    const v = expand(project('valueKernel', 'valueBias', kvHeads, dv));
    let scores: tf.Tensor = tf.div(tf.matMul(q, k, false, true), Math.sqrt(dk));
    const distance = Float32Array.from({ length: n * n }, (_, at) => (at % n) - Math.floor(at / n));
    for (const mod of o.scoreMods ?? []) {
      if (mod.type === 'softcap') scores = tf.mul(tf.tanh(tf.div(scores, mod.cap)), mod.cap);
      if (mod.type === 'alibi') {
        const slopes = tf.reshape(tf.tensor1d(alibiReference(heads)), [1, heads, 1, 1]);
        scores = tf.sub(scores, tf.mul(slopes, tf.abs(tf.tensor2d(distance, [n, n]))));
      }
      if (mod.type === 'relative-bias') {
        const buckets = Array.from(distance, (r) =>
          relativeBucket(r, mod.buckets, mod.maxDistance, mod.bidirectional),
        );
        // [n * n, heads], as a one-hot product (its gradient needs no gather kernel).
        const bias = tf.matMul(tf.oneHot(tf.tensor1d(buckets, 'int32'), mod.buckets), params.relativeBias!);
        scores = tf.add(scores, tf.reshape(tf.transpose(bias), [1, heads, n, n]));
      }
    }
    const keep = tf.tensor4d(Float32Array.from(o.keep.flatMap((m) => Array.from(m))), [batch, 1, n, n]);
    scores = tf.add(scores, tf.mul(tf.sub(1, keep), -1e9));
    const alive = tf.cast(tf.greater(tf.sum(keep, -1, true), 0), 'float32');
    const attended = tf.mul(tf.matMul(tf.softmax(scores), v), alive);
    const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * n, heads * dv]);
    const kernel = params.outputKernel!;
    let out = tf.matMul(merged, tf.reshape(kernel, [heads * dv, kernel.shape[2]!]));
    if (params.outputBias) out = tf.add(out, params.outputBias);
    out = tf.reshape(out, [batch, n, kernel.shape[2]!]);
    if (o.padding) out = tf.mul(out, tf.tensor3d(o.padding.flat(), [batch, n, 1]));
    return out;
  });
}

/** The attributes of {@link sparseAttentionOp} with defaults filled in. */
export function opAttrs(attrs: Partial<SparseAttentionAttrs>): SparseAttentionAttrs {
  return resolveAttrs(sparseAttentionOp, attrs as Record<string, never>, 'attn');
}

/** Seeded parameters for the op on inputs of these shapes (biases non-zero), by local name. */
export function seededParams(
  attrs: SparseAttentionAttrs,
  inputs: tf.Tensor[],
  seed = 5,
): Record<string, tf.Tensor> {
  const infos = inputs.map((t, i) => ({ name: `in${i}`, dtype: t.dtype as 'float32', shape: t.shape }));
  const out: Record<string, tf.Tensor> = {};
  (sparseAttentionOp.params?.(attrs, infos) ?? []).forEach((spec, i) => {
    out[spec.name] = seededUniform(spec.shape, { seed: seed + i, min: -0.5, max: 0.5 });
  });
  return out;
}

/** An op context for {@link sparseAttentionOp} alone on `inputs`, with `params` and a decision. */
function opContext(
  attrs: SparseAttentionAttrs,
  inputs: tf.Tensor[],
  params: Record<string, tf.Tensor>,
  decision?: unknown,
) {
  const batch = inputs[0]!.shape[0]!;
  return createOpContext({
    node: { name: 'attn', op: sparseAttentionOp.type, inputs: [], outputs: [], attrs },
    attrs,
    params,
    state: {},
    training: false,
    options: {},
    rows: { batchSize: batch, indices: Int32Array.from({ length: batch }, (_, i) => i) },
    inputGradients: inputs.map((_, i) => i === 0),
    seed: 1,
    ...(decision === undefined ? {} : { decision }),
  }).context;
}

/**
 * Runs the op alone on `inputs` with `params`: its decide step, then its forward. Returns the
 * output and `forward`, the forward as a function of `x` and the parameters' values (in
 * `Object.keys(params)` order) under that decision.
 */
export async function runOpAlone(
  attrs: SparseAttentionAttrs,
  inputs: tf.Tensor[],
  params: Record<string, tf.Tensor>,
): Promise<{ output: tf.Tensor; forward: (x: tf.Tensor, ...values: tf.Tensor[]) => tf.Tensor }> {
  const decision = await sparseAttentionOp.decide!(opContext(attrs, inputs, params), inputs);
  const names = Object.keys(params);
  const forward = (x: tf.Tensor, ...values: tf.Tensor[]) => {
    const p = Object.fromEntries(names.map((name, i) => [name, values[i]!]));
    const [y] = sparseAttentionOp.forward(opContext(attrs, inputs, p, decision), [
      x,
      ...inputs.slice(1),
    ]) as tf.Tensor[];
    return y!;
  };
  return { output: forward(inputs[0]!, ...names.map((n) => params[n]!)), forward };
}

/**
 * {@link runOpAlone}, then the gradients of `sum(output * weights)` with respect to `x` and
 * every parameter (in `Object.keys(params)` order) under `tf.grads`.
 */
export async function opWithGradients(
  attrs: SparseAttentionAttrs,
  inputs: tf.Tensor[],
  params: Record<string, tf.Tensor>,
  weights: tf.Tensor,
): Promise<{ output: tf.Tensor; grads: tf.Tensor[] }> {
  const { output, forward } = await runOpAlone(attrs, inputs, params);
  const grads = tf.grads((x: tf.Tensor, ...values: tf.Tensor[]) =>
    tf.sum(tf.mul(forward(x, ...values), weights)),
  )([inputs[0]!, ...Object.values(params)]);
  return { output, grads };
}

/** Gradients of `sum(reference * weights)` with respect to `x` and every parameter (in `Object.keys(params)` order). */
export function referenceGradients(
  x: tf.Tensor,
  params: Record<string, tf.Tensor>,
  options: ReferenceOptions,
  weights: tf.Tensor,
): tf.Tensor[] {
  const names = Object.keys(params);
  return tf.grads((input: tf.Tensor, ...values: tf.Tensor[]) =>
    tf.sum(
      tf.mul(
        denseReference(input, Object.fromEntries(names.map((n, i) => [n, values[i]!])), options),
        weights,
      ),
    ),
  )([x, ...names.map((n) => params[n]!)]);
}

/** One sparse-attention layer on `[batch, time, d]` (node `attn`, output `y`), with the optional inputs it wires. */
export function attentionGraph(
  options: Omit<SparseAttentionOptions, 'padding' | 'documents' | 'prefix'>,
  shape: { time: number | string; d: number },
  wire: { padding?: boolean; documents?: boolean; prefix?: boolean } = {},
): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', shape.time, shape.d]);
  const extras = {
    ...(wire.padding ? { padding: b.input('padding', 'float32', ['batch', shape.time]) } : {}),
    ...(wire.documents ? { documents: b.input('documents', 'int32', ['batch', shape.time]) } : {}),
    ...(wire.prefix ? { prefix: b.input('prefix', 'int32', ['batch']) } : {}),
  };
  const y = addSparseAttention(b, x, { name: 'attn', ...options, ...extras });
  return b.build({ y });
}

/** A model of {@link attentionGraph} with seeded uniform weights (biases non-zero). */
export function attentionModel(graph: Graph, seed = 2): Model {
  const model = createModel(runtime, graph, { seed });
  let i = 0;
  for (const v of model.params.values()) {
    const values = seededUniform(v.shape, { seed: seed * 100 + i++, min: -0.5, max: 0.5 });
    v.assign(values);
    values.dispose();
  }
  return model;
}

/**
 * On webgl, has the tests of the enclosing block compile their shaders with shapes as uniforms
 * (tfjs's `WEBGL_USE_SHAPES_UNIFORMS`): tests whose sizes change from case to case (plans keeping
 * different block counts, decoding at every length) otherwise compile each op's shader anew per
 * shape, about 100 ms each under a software GL. The op tests keep the default shaders.
 */
export function shapeUniformsOnWebgl(backend: BackendName): void {
  if (backend !== 'webgl') return;
  beforeEach(() => {
    tf.env().set('WEBGL_USE_SHAPES_UNIFORMS', true);
  });
  afterEach(() => {
    tf.env().set('WEBGL_USE_SHAPES_UNIFORMS', false);
  });
}

/**
 * The values of `compute`'s tensors computed on the cpu backend (inputs it makes are freed), then
 * the backend active before made active again: references computed once, in plain float32 on the
 * host, that every backend's results are held to, with no reference shaders compiled on a GPU.
 */
export async function valuesOnCpu(compute: () => tf.Tensor[]): Promise<Float32Array[]> {
  const previous = tf.getBackend() as BackendName;
  await activateBackend('cpu');
  try {
    const tensors = tf.tidy(compute);
    const values = await Promise.all(tensors.map((t) => t.data() as Promise<Float32Array>));
    tf.dispose(tensors);
    return values;
  } finally {
    await activateBackend(previous);
  }
}

/**
 * {@link describeEachBackend} on the backends that compute on the CPU (cpu and wasm in Node, wasm
 * in a browser), for tests of what a GPU computes no differently: plans, reports, saving,
 * the op's wiring. The kernel's numerics are held to a reference on every backend elsewhere.
 */
export function describeOnCpuBackends(name: string, body: (backend: BackendName) => void): void {
  for (const backend of testBackends().filter((b) => !isGpuBackend(b))) {
    describe(`${name} [${backend}]`, () => {
      beforeEach(async () => {
        await activateBackend(backend);
      });
      body(backend);
    });
  }
}
