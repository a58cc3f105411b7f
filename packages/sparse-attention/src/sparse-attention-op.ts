import {
  type Dim,
  defineOp,
  kerasGlorot,
  linear,
  type OpContext,
  type ParamSpec,
  type SessionStateSpec,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BlockAttentionOptions,
  blockAttention,
  gatheredBytes,
  keptTileFlops,
} from './block-attention.js';
import { type BlockPlan, planBlocks } from './block-plan.js';
import { assignNearest } from './kmeans-online.js';
import {
  type Pattern,
  patternLookAhead,
  patternLookBack,
  patternNeeds,
  patternPrefixes,
  patternProblem,
  patternUpperBound,
} from './pattern.js';
import {
  centroidUpdate,
  commitmentLoss,
  planRouting,
  type RoutingAttrs,
  type RoutingPlan,
  routingAttention,
  unitNormalize,
  validateRoutingAttrs,
} from './routing-attention.js';
import { RoutingCache, type RoutingStep, routingDecodeAttention } from './routing-cache.js';
import { type ScoreMod, scoreModsProblem } from './score-mods.js';

/** The op type of {@link sparseAttentionOp}. */
export const SPARSE_ATTENTION_OP = 'sparse-attention.SparseAttention';

/** The optional inputs a sparse-attention layer can take, after `x`, in this order. */
export const EXTRA_INPUTS = ['padding', 'documents', 'prefix'] as const;

/**
 * An optional input of a sparse-attention layer: `padding` `[batch, time]` (1 a token, 0
 * padding; float32, int32 or bool), `documents` `[batch, time]` int32 document ids (`document`
 * patterns), `prefix` `[batch]` int32 prefix lengths (`prefix-lm` patterns without a prefix).
 */
export type ExtraInput = (typeof EXTRA_INPUTS)[number];

/** Attributes of {@link sparseAttentionOp}. */
export type SparseAttentionAttrs = {
  /** Attention heads, routing heads included. */
  numHeads: number;
  /** Key/value heads of the pattern heads (grouped-query attention); null: one per pattern head. */
  numKvHeads: number | null;
  /** Size of each query/key head. */
  keyDim: number;
  /** Size of each value head; null: `keyDim`. */
  valueDim: number | null;
  /** Features out; null: the input's. */
  outputDim: number | null;
  /** Whether the projections have biases. */
  useBias: boolean;
  /** Which pairs the pattern heads keep. */
  pattern: Pattern;
  /** Keys per block (block layouts count in it too). */
  blockSize: number;
  /** Score modifiers of the pattern heads, in order. */
  scoreMods: ScoreMod[];
  /** The optional inputs wired after `x`, in {@link EXTRA_INPUTS} order. */
  extraInputs: ExtraInput[];
  /** Routing heads (the last `routing.heads` heads), or null for none. */
  routing: { [K in keyof RoutingAttrs]: RoutingAttrs[K] } | null;
};

/** What a sparse-attention layer's decide step hands its forward: plain data. */
export interface SparseAttentionDecision {
  /** The pattern heads' plan (absent when every head routes). */
  plan?: BlockPlan;
  /** The routing heads' plan for a run over a whole sequence. */
  routing?: RoutingPlan;
  /** In a session, the routing heads' step: what each new token attends to. */
  routingStep?: RoutingStep;
  /** In a session, the routing cache after this call (written to the session by the forward). */
  routingCache?: Int32Array;
  /** Positions the session saw before this call (0 without a session). */
  offset: number;
}

/** The sizes a layer computes with, attributes resolved. */
interface Sizes {
  heads: number;
  /** Pattern heads: the first `heads - routingHeads`. */
  patternHeads: number;
  routingHeads: number;
  kvHeads: number;
  keyDim: number;
  valueDim: number;
  outputDim: number;
  features: number;
}

function sizes(attrs: SparseAttentionAttrs, features: number): Sizes {
  const routingHeads = attrs.routing?.heads ?? 0;
  const patternHeads = attrs.numHeads - routingHeads;
  return {
    heads: attrs.numHeads,
    patternHeads,
    routingHeads,
    kvHeads: attrs.numKvHeads ?? patternHeads,
    keyDim: attrs.keyDim,
    valueDim: attrs.valueDim ?? attrs.keyDim,
    outputDim: attrs.outputDim ?? features,
    features,
  };
}

/** Whether the layer keeps a KV cache in a session: no query ever needs a later run's key. */
function decodes(attrs: SparseAttentionAttrs): boolean {
  const patternDecodes = attrs.numHeads === attrs.routing?.heads || patternLookAhead(attrs.pattern) !== 'any';
  return patternDecodes && (attrs.routing === null || attrs.routing.causal);
}

/** A shape as `[batch, 7, 16]`. */
function describe(dims: readonly Dim[]): string {
  return `[${dims.join(', ')}]`;
}

/**
 * Checks the attributes and inputs; returns the layer's sizes. Throws plain errors, which the
 * compiler wraps in a `DynnError` naming the node.
 */
function check(attrs: SparseAttentionAttrs, inputs: readonly ValueInfo[]): Sizes {
  const [x] = inputs;
  if (x === undefined || x.shape.length !== 3 || typeof x.shape[2] !== 'number') {
    throw new Error(
      `a sparse-attention layer needs x [batch, time, features] with a known feature size, got ${describe(x?.shape ?? [])}`,
    );
  }
  if (x.dtype !== 'float32') throw new Error(`x must be float32, got ${x.dtype}`);
  const problem =
    patternProblem(attrs.pattern, "attribute 'pattern'") ??
    scoreModsProblem(attrs.scoreMods, "attribute 'scoreMods'");
  if (problem) throw new Error(problem);
  if (attrs.routing !== null) {
    try {
      validateRoutingAttrs(attrs.routing, attrs.numHeads);
    } catch (error) {
      // Rethrown plain, so that the message reaches the user with the node's name.
      throw new Error((error as Error).message);
    }
  }
  const s = sizes(attrs, x.shape[2]);
  if (s.patternHeads > 0 && s.patternHeads % s.kvHeads !== 0) {
    throw new Error(
      `numKvHeads (${s.kvHeads}) must divide the ${s.patternHeads} pattern heads: each key/value head serves a group of query heads`,
    );
  }
  if (s.patternHeads === 0 && attrs.numKvHeads !== null) {
    throw new Error('every head routes, so the layer has no key/value heads: leave numKvHeads null');
  }
  const extras = attrs.extraInputs;
  const order = extras.map((e) => EXTRA_INPUTS.indexOf(e));
  if (order.some((i) => i < 0) || order.some((i, k) => k > 0 && i <= order[k - 1]!)) {
    throw new Error(
      `attribute 'extraInputs' is ${JSON.stringify(extras)}; list each of ${EXTRA_INPUTS.map((e) => `'${e}'`).join(', ')} at most once, in that order`,
    );
  }
  if (inputs.length !== 1 + extras.length) {
    throw new Error(
      `the layer takes x then ${extras.length === 0 ? 'nothing' : extras.join(', ')} (attribute 'extraInputs'), but has ${inputs.length} inputs`,
    );
  }
  const needs = patternNeeds(attrs.pattern);
  const usesPattern = s.patternHeads > 0;
  const want = (name: ExtraInput, needed: boolean, why: string) => {
    if (needed && usesPattern && !extras.includes(name)) {
      throw new Error(`the pattern ${why}: wire it as an input and add '${name}' to attribute 'extraInputs'`);
    }
    if (!needed && extras.includes(name)) {
      throw new Error(
        `input '${name}' is wired but nothing reads it (${why.replace('needs', 'would need')}); remove it`,
      );
    }
  };
  want('documents', needs.documents, "has a 'document' part, which needs each position's document id");
  want(
    'prefix',
    needs.prefix,
    "has a 'prefix-lm' part without 'prefix', which needs each row's prefix length",
  );
  if (attrs.routing !== null && extras.includes('padding')) {
    throw new Error('routing heads take no padding mask: remove the padding input, or the routing heads');
  }
  const [batch, time] = x.shape;
  extras.forEach((name, k) => {
    const info = inputs[k + 1]!;
    const expected: Dim[] = name === 'prefix' ? [batch!] : [batch!, time!];
    const sameShape =
      info.shape.length === expected.length &&
      info.shape.every(
        (d, i) => typeof d !== 'number' || typeof expected[i] !== 'number' || d === expected[i],
      );
    if (!sameShape) {
      throw new Error(
        `input '${name}' must be ${describe(expected)} as x's ${name === 'prefix' ? 'batch' : 'batch and time'}, got ${describe(info.shape)}`,
      );
    }
    if (name !== 'padding' && info.dtype !== 'int32')
      throw new Error(`input '${name}' must be int32, got ${info.dtype}`);
  });
  return s;
}

/** The wired optional input `name`, or undefined. */
function extra(
  attrs: SparseAttentionAttrs,
  inputs: readonly tf.Tensor[],
  name: ExtraInput,
): tf.Tensor | undefined {
  const at = attrs.extraInputs.indexOf(name);
  return at < 0 ? undefined : inputs[at + 1];
}

/** `x` `[batch, time, d]` through a `[d, heads, dim]` kernel (heads `from` to `from + count`): `[batch, time, count * dim]`. */
function project(
  x: tf.Tensor,
  kernel: tf.Tensor,
  bias: tf.Tensor | undefined,
  from: number,
  count: number,
  inputGradient: boolean,
): tf.Tensor {
  const [d, heads, dim] = kernel.shape as [number, number, number];
  const whole = from === 0 && count === heads;
  const k = whole ? kernel : tf.slice(kernel, [0, from, 0], [d, count, dim]);
  const b = bias === undefined ? undefined : whole ? bias : tf.slice(bias, [from, 0], [count, dim]);
  return linear(
    x,
    tf.reshape(k, [d, count * dim]) as tf.Tensor2D,
    b && tf.reshape(b, [count * dim]),
    inputGradient,
  );
}

/** `[batch, time, heads * dim]` -> `[batch, heads, time, dim]`. */
function splitHeads(x: tf.Tensor, heads: number): tf.Tensor {
  const [batch, time, width] = x.shape as [number, number, number];
  return tf.transpose(tf.reshape(x, [batch, time, heads, width / heads]), [0, 2, 1, 3]);
}

/** `[batch, heads, time, dim]` -> `[batch, time, heads * dim]`. */
function mergeHeads(x: tf.Tensor): tf.Tensor {
  const [batch, heads, time, dim] = x.shape as [number, number, number, number];
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [batch, time, heads * dim]);
}

/**
 * The last `count` positions of `x` along its time axis (axis 2 of `[batch, heads, time, dim]`,
 * axis 1 of `[batch, time]`); all of them when it holds no more.
 */
function lastPositions(x: tf.Tensor, count: number): tf.Tensor {
  const axis = x.rank === 4 ? 2 : 1;
  const total = x.shape[axis]!;
  if (count >= total) return x;
  const begin = x.shape.map((_, i) => (i === axis ? total - count : 0));
  const size = x.shape.map((d, i) => (i === axis ? count : d));
  return tf.slice(x, begin, size);
}

/** The routing heads' unit shared query-key vectors `[batch * routingHeads, time, keyDim]`. */
function routingVectors(
  ctx: OpContext<SparseAttentionAttrs>,
  x: tf.Tensor,
  s: Sizes,
  inputGradient: boolean,
) {
  const [batch, time] = x.shape as [number, number];
  const q = project(
    x,
    ctx.params.queryKernel!,
    ctx.params.queryBias,
    s.patternHeads,
    s.routingHeads,
    inputGradient,
  );
  return tf.reshape(unitNormalize(splitHeads(q, s.routingHeads)), [batch * s.routingHeads, time, s.keyDim]);
}

/** The centroids, scaled to unit length (they start as normal draws). */
function unitCentroids(ctx: OpContext<SparseAttentionAttrs>): tf.Tensor {
  return unitNormalize(ctx.state.centroids!);
}

/** Values of a float or int tensor as numbers on the host. */
async function hostValues(t: tf.Tensor): Promise<Float32Array | Int32Array | Uint8Array> {
  return (await t.data()) as Float32Array | Int32Array | Uint8Array;
}

/** `[batch, past]` cached values then `[batch, time]` new ones, per row: `[batch, past + time]`. */
function joinRows(
  cached: ArrayLike<number> | undefined,
  fresh: ArrayLike<number>,
  batch: number,
  past: number,
  time: number,
): Int32Array {
  const out = new Int32Array(batch * (past + time));
  for (let b = 0; b < batch; b++) {
    for (let p = 0; p < past; p++) out[b * (past + time) + p] = cached![b * past + p]!;
    for (let t = 0; t < time; t++) out[b * (past + time) + past + t] = fresh[b * time + t]!;
  }
  return out;
}

/** The options of the pattern heads' kernel. */
function kernelOptions(ctx: OpContext<SparseAttentionAttrs>, s: Sizes): BlockAttentionOptions {
  return {
    numHeads: s.patternHeads,
    numKvHeads: s.kvHeads,
    keyDim: s.keyDim,
    valueDim: s.valueDim,
    scoreMods: ctx.attrs.scoreMods,
    ...(ctx.params.relativeBias ? { relativeBias: ctx.params.relativeBias } : {}),
  };
}

/** Whether a session applies to this call. */
function sessionOf(ctx: OpContext<SparseAttentionAttrs>) {
  return decodes(ctx.attrs) ? ctx.session : undefined;
}

/**
 * `sparse-attention.SparseAttention`: multi-head self-attention that computes only the query-key
 * pairs its pattern keeps (`[batch, time, d]` -> `[batch, time, outputDim]`).
 *
 * - **Pattern heads** (the first `numHeads - routing.heads`) follow `pattern` (a JSON
 *   {@link Pattern}: causal, windows, global tokens, block layouts, documents, prefix-LM, and/or),
 *   computed block by block: the decide step plans on the host which key blocks each query block
 *   keeps ({@link planBlocks}: static patterns are planned once per length, data-dependent ones
 *   per call from the inputs read back); the forward gathers only those ({@link blockAttention}).
 *   `numKvHeads` below their count makes grouped-query attention. `scoreMods` (ALiBi, a T5
 *   relative bias, soft-capping) change their scores.
 * - **Routing heads** (the last `routing.heads`, the Routing Transformer): a shared, unit-length
 *   query-key projection, clustered by online k-means centroids (state `centroids`, moved in
 *   training, with an optional commitment loss `commitment`); each cluster's tokens attend within
 *   windows of `routing.window`.
 * - **Optional inputs** after `x`, named in order by `extraInputs`: `padding` `[batch, time]` (1 a
 *   token, 0 padding), `documents` `[batch, time]` int32, `prefix` `[batch]` int32. A padded key is
 *   never attended; a padded position outputs zeros. A query of a pattern head that keeps no key
 *   gets zero attention (its output is the output bias).
 * - **Parameters** as `core.MultiHeadAttention`'s, so weights carry over: `queryKernel`
 *   `[d, numHeads, keyDim]`, `keyKernel` `[d, numKvHeads, keyDim]`, `valueKernel`
 *   `[d, numKvHeads, valueDim]`, `outputKernel` `[numHeads, valueDim, outputDim]`, with `useBias`
 *   `queryBias`, `keyBias`, `valueBias` (`[heads, dim]`) and `outputBias` `[outputDim]`; routing
 *   heads add `routingValueKernel` `[d, routing.heads, valueDim]` (and `routingValueBias`), and a
 *   `relative-bias` modifier `relativeBias` `[buckets, patternHeads]`. State: `centroids`
 *   `[routing.heads, clusters, keyDim]`.
 * - **Sessions**: when no query ever needs a later key (a causal pattern, or a prefix-LM whose
 *   whole prefix is in the first run; causal routing), the layer keeps its keys and values in the
 *   session, only those the pattern can still reach (the last `before` positions of a look-back
 *   window), and the position offset; a run of new tokens is planned and computed the same way,
 *   giving what a run over the whole sequence gives. Other patterns ignore the session.
 * - **FLOPs**: the projections and the tiles the kernel computes: those the pattern keeps plus
 *   the sentinels padding each group of query blocks (for a data-dependent pattern, the tiles it
 *   may keep: `document` and an input prefix counted as full); the report's stats hold the tiles
 *   of this call (`keptTiles`, `partialTiles`, `computedTiles`, `denseTiles`) and the groups they
 *   were computed in (`tileGroups`), and its bytes the keys and values gathered.
 */
export const sparseAttentionOp = defineOp<SparseAttentionAttrs>({
  type: SPARSE_ATTENTION_OP,
  version: 1,
  description:
    'Multi-head self-attention over the query-key pairs a pattern keeps, block by block, with optional routing heads.',
  attrs: {
    numHeads: { kind: 'int', min: 1, doc: 'attention heads, routing heads included' },
    numKvHeads: {
      kind: 'int',
      min: 1,
      default: null,
      doc: 'key/value heads of the pattern heads (grouped-query attention); null: one per head',
    },
    keyDim: { kind: 'int', min: 1, doc: 'size of each query/key head' },
    valueDim: { kind: 'int', min: 1, default: null, doc: 'size of each value head (null: keyDim)' },
    outputDim: { kind: 'int', min: 1, default: null, doc: 'features out (null: the input features)' },
    useBias: { kind: 'bool', default: true, doc: 'add biases to the projections' },
    pattern: {
      kind: 'json',
      default: { type: 'full' },
      doc: 'which query-key pairs the pattern heads keep (JSON)',
    },
    blockSize: { kind: 'int', min: 1, default: 32, doc: 'keys per block; block layouts count in it' },
    scoreMods: {
      kind: 'json',
      default: [],
      doc: 'score modifiers: alibi, relative-bias, softcap (JSON list)',
    },
    extraInputs: {
      kind: 'strings',
      default: [],
      doc: "optional inputs after x, in order: 'padding', 'documents', 'prefix'",
    },
    routing: {
      kind: 'json',
      default: null,
      doc: 'routing heads: { heads, clusters, window, causal, decay, commitment }, or null',
    },
  },
  inputs: { min: 1, max: 1 + EXTRA_INPUTS.length },
  params(attrs, inputs) {
    const s = check(attrs, inputs);
    const kernel = (name: string, shape: number[]): ParamSpec => ({ name, shape, init: kerasGlorot(shape) });
    const bias = (name: string, shape: number[]): ParamSpec[] =>
      attrs.useBias ? [{ name, shape, init: { kind: 'zeros' } }] : [];
    const patternKv =
      s.patternHeads === 0
        ? []
        : [
            kernel('keyKernel', [s.features, s.kvHeads, s.keyDim]),
            ...bias('keyBias', [s.kvHeads, s.keyDim]),
            kernel('valueKernel', [s.features, s.kvHeads, s.valueDim]),
            ...bias('valueBias', [s.kvHeads, s.valueDim]),
          ];
    const routingV =
      s.routingHeads === 0
        ? []
        : [
            kernel('routingValueKernel', [s.features, s.routingHeads, s.valueDim]),
            ...bias('routingValueBias', [s.routingHeads, s.valueDim]),
          ];
    const relative = attrs.scoreMods.find((m) => m.type === 'relative-bias');
    return [
      kernel('queryKernel', [s.features, s.heads, s.keyDim]),
      ...bias('queryBias', [s.heads, s.keyDim]),
      ...patternKv,
      ...routingV,
      kernel('outputKernel', [s.heads, s.valueDim, s.outputDim]),
      ...bias('outputBias', [s.outputDim]),
      ...(relative && s.patternHeads > 0
        ? [
            {
              name: 'relativeBias',
              shape: [relative.buckets, s.patternHeads],
              init: { kind: 'zeros' },
            } as ParamSpec,
          ]
        : []),
    ];
  },
  state(attrs, inputs) {
    const s = check(attrs, inputs);
    if (attrs.routing === null) return [];
    return [
      {
        name: 'centroids',
        shape: [s.routingHeads, attrs.routing.clusters, s.keyDim],
        init: { kind: 'normal', mean: 0, std: 1 },
      },
    ];
  },
  inferShape(attrs, inputs) {
    const s = check(attrs, inputs);
    const [batch, time] = inputs[0]!.shape;
    return [{ shape: [batch!, time!, s.outputDim], dtype: 'float32' }];
  },
  sessionState(attrs, inputs): SessionStateSpec[] {
    if (!decodes(attrs)) return [];
    const s = sizes(attrs, inputs[0]!.shape[2] as number);
    const specs: SessionStateSpec[] = [{ name: 'offset', kind: 'number' }];
    if (s.patternHeads > 0) {
      specs.push(
        { name: 'keys', kind: 'tensor', dtype: 'float32', shape: ['batch', s.kvHeads, 'past', s.keyDim] },
        { name: 'values', kind: 'tensor', dtype: 'float32', shape: ['batch', s.kvHeads, 'past', s.valueDim] },
      );
      if (attrs.extraInputs.includes('padding'))
        specs.push({ name: 'padding', kind: 'tensor', dtype: 'int32', shape: ['batch', 'past'] });
      if (attrs.extraInputs.includes('documents'))
        specs.push({ name: 'documents', kind: 'tensor', dtype: 'int32', shape: ['batch', 'past'] });
    }
    if (s.routingHeads > 0) {
      specs.push(
        { name: 'routingKeys', kind: 'tensor', dtype: 'float32', shape: ['rows', 'seen', s.keyDim] },
        { name: 'routingValues', kind: 'tensor', dtype: 'float32', shape: ['rows', 'seen', s.valueDim] },
        { name: 'routingCache', kind: 'tensor', dtype: 'int32', shape: ['numbers'] },
      );
    }
    return specs;
  },
  decidesInTraining: true,
  async decide(ctx, inputs): Promise<SparseAttentionDecision> {
    const { attrs } = ctx;
    const x = inputs[0]!;
    const [batch, time, features] = x.shape as [number, number, number];
    const s = sizes(attrs, features);
    const session = sessionOf(ctx);
    const offset = (session?.read('offset') as number | undefined) ?? 0;
    const decision: SparseAttentionDecision = { offset };
    if (s.patternHeads > 0) {
      const cachedKeys = session?.read('keys') as tf.Tensor | undefined;
      const past = cachedKeys?.shape[2] ?? 0;
      const read = async (name: ExtraInput) => {
        const input = extra(attrs, inputs, name);
        if (input === undefined) return undefined;
        const fresh = await hostValues(input);
        if (name === 'prefix') return Int32Array.from(fresh);
        const cached = session?.read(name) as tf.Tensor | undefined;
        return joinRows(cached && (await hostValues(cached)), fresh, batch, past, time);
      };
      const [padding, documents, prefix] = [
        await read('padding'),
        await read('documents'),
        await read('prefix'),
      ];
      if (offset > 0 && patternLookAhead(attrs.pattern) === 'prefix') {
        // A query of an earlier run inside a prefix would have needed this run's keys.
        const prefixes = [
          ...patternPrefixes(attrs.pattern).filter((p): p is number => p !== undefined),
          ...(prefix ?? []),
        ];
        const longest = Math.max(0, ...prefixes);
        if (longest > offset) {
          throw new Error(
            `a prefix of ${longest} positions reaches past the ${offset} positions of the session's earlier runs: give the whole prefix in the first run`,
          );
        }
      }
      decision.plan = planBlocks({
        pattern: attrs.pattern,
        blockSize: attrs.blockSize,
        queries: time,
        keys: past + time,
        keyStart: offset - past,
        rows: batch,
        ...(padding ? { padding } : {}),
        ...(documents ? { documents } : {}),
        ...(prefix ? { prefix } : {}),
      });
    }
    if (attrs.routing !== null) {
      const shape = { batch, heads: s.routingHeads, time, dim: s.keyDim, valueDim: s.valueDim };
      const [vectorsT, centroidsT] = tf.tidy(() => [routingVectors(ctx, x, s, false), unitCentroids(ctx)]);
      const [vectors, centroids] = [
        (await vectorsT!.data()) as Float32Array,
        (await centroidsT!.data()) as Float32Array,
      ];
      tf.dispose([vectorsT!, centroidsT!]);
      if (session !== undefined) {
        const saved = session.read('routingCache') as tf.Tensor | undefined;
        const cache = saved
          ? RoutingCache.fromArray(await saved.data())
          : new RoutingCache({
              rows: batch * s.routingHeads,
              clusters: attrs.routing.clusters,
              window: attrs.routing.window,
            });
        decision.routingStep = cache.appendTokens(assignNearest(vectors, centroids, shape));
        decision.routingCache = cache.toArray();
      } else {
        decision.routing = planRouting(vectors, centroids, shape, attrs.routing);
      }
    }
    return decision;
  },
  forward(ctx, inputs) {
    const decision = ctx.decision as SparseAttentionDecision | undefined;
    if (decision === undefined)
      throw new Error('a sparse-attention layer runs after its decide step; none was made');
    const { attrs, params: p } = ctx;
    const x = inputs[0]!;
    const [batch, time, features] = x.shape as [number, number, number];
    const s = sizes(attrs, features);
    const inputGradient = ctx.inputGradients[0] ?? true;
    const session = sessionOf(ctx);
    const writes: [string, tf.Tensor][] = [];
    let centroids: tf.Tensor | undefined;
    // The commitment loss leaves the tidy as a result, not kept: the caller's scope (the
    // gradient tape's, in training) then frees it with the rest of the step.
    const [output, ...losses] = tf.tidy(() => {
      const losses: tf.Tensor[] = [];
      const heads: tf.Tensor[] = [];
      if (decision.plan !== undefined) {
        const plan = decision.plan;
        const q = project(x, p.queryKernel!, p.queryBias, 0, s.patternHeads, inputGradient);
        let k = splitHeads(project(x, p.keyKernel!, p.keyBias, 0, s.kvHeads, inputGradient), s.kvHeads);
        let v = splitHeads(project(x, p.valueKernel!, p.valueBias, 0, s.kvHeads, inputGradient), s.kvHeads);
        if (session !== undefined) {
          const cachedKeys = session.read('keys') as tf.Tensor | undefined;
          const cachedValues = session.read('values') as tf.Tensor | undefined;
          if (cachedKeys !== undefined && cachedValues !== undefined) {
            k = tf.concat([cachedKeys, k], 2);
            v = tf.concat([cachedValues, v], 2);
          }
          // Only what a later query can still reach stays: the last `before` keys of a look-back window.
          const reach = patternLookBack(attrs.pattern);
          writes.push(
            ['keys', tf.keep(lastPositions(k, reach))],
            ['values', tf.keep(lastPositions(v, reach))],
          );
          for (const name of ['padding', 'documents'] as const) {
            const input = extra(attrs, inputs, name);
            if (input === undefined) continue;
            const cached = session.read(name) as tf.Tensor | undefined;
            const fresh = tf.cast(input, 'int32');
            writes.push([
              name,
              tf.keep(lastPositions(cached ? tf.concat([cached, fresh], 1) : fresh, reach)),
            ]);
          }
        }
        heads.push(blockAttention(q, k, v, plan, kernelOptions(ctx, s)));
      }
      if (attrs.routing !== null) {
        const qk = routingVectors(ctx, x, s, inputGradient);
        const values = tf.reshape(
          splitHeads(
            project(x, p.routingValueKernel!, p.routingValueBias, 0, s.routingHeads, inputGradient),
            s.routingHeads,
          ),
          [batch * s.routingHeads, time, s.valueDim],
        );
        let routed: tf.Tensor;
        if (decision.routingStep !== undefined && session !== undefined) {
          const cachedKeys = session.read('routingKeys') as tf.Tensor | undefined;
          const cachedValues = session.read('routingValues') as tf.Tensor | undefined;
          const keys = cachedKeys ? tf.concat([cachedKeys, qk], 1) : qk;
          const vals = cachedValues ? tf.concat([cachedValues, values], 1) : values;
          routed = routingDecodeAttention(qk, keys, vals, decision.routingStep);
          writes.push(
            ['routingKeys', tf.keep(keys)],
            ['routingValues', tf.keep(vals)],
            ['routingCache', tf.keep(tf.tensor1d(decision.routingCache!, 'int32'))],
          );
        } else {
          const plan = decision.routing!;
          routed = routingAttention(qk, values, plan);
          if (ctx.training) {
            const unit = unitCentroids(ctx);
            centroids = tf.keep(centroidUpdate(unit, qk, plan, attrs.routing.decay));
            if (attrs.routing.commitment > 0) losses.push(commitmentLoss(qk, unit, plan));
          }
        }
        heads.push(mergeHeads(tf.reshape(routed, [batch, s.routingHeads, time, s.valueDim])));
      }
      const merged = heads.length === 1 ? heads[0]! : tf.concat(heads, 2);
      let out = linear(
        merged,
        tf.reshape(p.outputKernel!, [s.heads * s.valueDim, s.outputDim]) as tf.Tensor2D,
        p.outputBias,
      );
      const padding = extra(attrs, inputs, 'padding');
      // A padded position outputs zeros, whatever the output bias.
      if (padding !== undefined)
        out = tf.mul(out, tf.reshape(tf.cast(tf.notEqual(padding, 0), 'float32'), [batch, time, 1]));
      return [out, ...losses];
    });
    if (session !== undefined) {
      session.write('offset', decision.offset + time);
      for (const [name, value] of writes) session.write(name, value);
    }
    if (centroids !== undefined) ctx.updateState('centroids', centroids);
    for (const loss of losses) ctx.addLoss(loss as tf.Scalar, 'commitment');
    if (decision.plan !== undefined) {
      const plan = decision.plan;
      ctx.record('keptTiles', plan.keptTiles);
      ctx.record('partialTiles', plan.partialTiles);
      ctx.record('computedTiles', plan.computedTiles);
      ctx.record('tileGroups', plan.groups.length);
      ctx.record('denseTiles', plan.denseTiles);
      ctx.addCompute({ bytes: gatheredBytes(plan, batch, kernelOptions(ctx, s)) });
    }
    if (decision.routing !== undefined) {
      ctx.record('routingPairs', decision.routing.keptPairs);
      ctx.record('clusterSizes', Array.from(decision.routing.clusterSizes));
      ctx.addCompute({ bytes: decision.routing.bytes });
    }
    return [output!];
  },
  flops(attrs, inputs) {
    const [batch, time, features] = inputs[0] as [number, number, number];
    const s = sizes(attrs, features);
    const widths =
      s.features * s.heads * s.keyDim +
      s.features * s.kvHeads * (s.keyDim + s.valueDim) * (s.patternHeads > 0 ? 1 : 0) +
      s.features * s.routingHeads * s.valueDim +
      s.heads * s.valueDim * s.outputDim;
    const biases = attrs.useBias
      ? s.heads * s.keyDim +
        (s.patternHeads > 0 ? s.kvHeads * (s.keyDim + s.valueDim) : 0) +
        s.routingHeads * s.valueDim +
        s.outputDim
      : 0;
    let total = batch * time * (2 * widths + biases);
    if (s.patternHeads > 0) {
      const plan = planBlocks({
        pattern: patternUpperBound(attrs.pattern),
        blockSize: attrs.blockSize,
        queries: time,
        keys: time,
      });
      total += keptTileFlops(plan, batch, {
        numHeads: s.patternHeads,
        numKvHeads: s.kvHeads,
        keyDim: s.keyDim,
        valueDim: s.valueDim,
        scoreMods: attrs.scoreMods,
      });
    }
    if (attrs.routing !== null) {
      // At most one window per `window` tokens of a row plus one per cluster; causal windows see two.
      const w = Math.min(attrs.routing.window, time);
      const windows = attrs.routing.causal
        ? Math.min(time, Math.floor(time / w) + attrs.routing.clusters)
        : attrs.routing.clusters;
      const keys = attrs.routing.causal ? 2 * w : w;
      total += batch * s.routingHeads * windows * w * keys * (2 * s.keyDim + 2 * s.valueDim + 6);
    }
    return total;
  },
});
