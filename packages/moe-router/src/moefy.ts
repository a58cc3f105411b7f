import {
  type Attrs,
  applyPass,
  DynnError,
  definePass,
  type Graph,
  type Model,
  type PassContext,
  type PassResult,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  checkInteger,
  checkOptionKeys,
  expertGraph,
  type FeedForward,
  feedForwardWeights,
  type LocatedFeedForward,
  locateFeedForward,
  type MoeRouterOptions,
  ROUTER_OPTION_KEYS,
  replaceFeedForward,
  routerAttrs,
} from './feed-forward.js';
import { balancedKMeans } from './kmeans.js';
import { MOE_OP } from './moe-op.js';

/** The name of the MoEfication pass. */
export const MOEFY_PASS = 'moe-router.moefy';

/**
 * How MoEfication groups the hidden neurons into experts: `'cluster'` by balanced k-means of
 * their input weight vectors (neurons that respond to similar inputs share an expert), or
 * `'contiguous'` in their order (neurons 0 to d_ff/N - 1 in the first expert...).
 */
export type MoefyMethod = 'cluster' | 'contiguous';

/** Options of the pass `moe-router.moefy` and of {@link moefyModel}; the router's choices besides. */
export interface MoefyOptions extends MoeRouterOptions {
  /**
   * The first Dense of the feed-forward block (`d -> d_ff`, with an activation or followed by a
   * `core.Activation`); its only reader must be the second Dense (see {@link findFeedForwards}).
   */
  node: string;
  /** Number of experts N, from 2 to d_ff; d_ff must be divisible by it (each expert gets d_ff / N neurons). */
  experts: number;
  /**
   * Experts per token (default 2, or 1 for the `'switch'` router); run option
   * `moeOptions({ k: experts })` runs every expert, which gives the dense block's outputs.
   */
  k?: number;
  /** How the neurons are grouped (default `'cluster'`). */
  method?: MoefyMethod;
  /** Seed of the k-means++ initialisation of `'cluster'` (default 0): the same seed gives the same experts. */
  seed?: number;
  /**
   * The hidden neurons of each expert, given instead of computed (e.g. by co-activation): N
   * non-empty lists of neuron indices that together hold every neuron once; `method` is then
   * ignored and the sizes may differ.
   */
  groups?: readonly (readonly number[])[];
}

const MOEFY_KEYS = ['node', 'experts', 'k', 'method', 'seed', 'groups', ...ROUTER_OPTION_KEYS];

function fail(message: string, node: string): never {
  throw new DynnError('INVALID_OPTION', `${MOEFY_PASS}: ${message}.`, { node });
}

/** The divisors of `n` from 2 up, at most `limit` of them: the expert counts that split `n` neurons evenly. */
function divisors(n: number, limit = 12): number[] {
  const out: number[] = [];
  for (let d = 2; d <= n && out.length < limit; d++) if (n % d === 0) out.push(d);
  return out;
}

/** The options checked against the block: the expert count and `k`. */
function checkSplit(ffn: FeedForward, options: MoefyOptions): { experts: number; k: number } {
  checkOptionKeys(options, MOEFY_KEYS, MOEFY_PASS);
  const experts = checkInteger(options.experts, 'experts', 2, ffn.hidden, MOEFY_PASS, ffn.node);
  if (options.groups === undefined && ffn.hidden % experts !== 0) {
    fail(
      `the hidden layer of '${ffn.node}' has ${ffn.hidden} neurons, which ${experts} experts cannot share evenly; ` +
        `give 'experts' a divisor of ${ffn.hidden} (${divisors(ffn.hidden).join(', ')}...)`,
      ffn.node,
    );
  }
  const method = options.method ?? 'cluster';
  if (method !== 'cluster' && method !== 'contiguous') {
    fail(`'method' must be 'cluster' or 'contiguous', got ${JSON.stringify(method)}`, ffn.node);
  }
  if (options.seed !== undefined && !Number.isInteger(options.seed)) {
    fail(`'seed' must be an integer, got ${JSON.stringify(options.seed)}`, ffn.node);
  }
  const k = checkInteger(
    options.k ?? (options.router === 'switch' ? 1 : Math.min(2, experts)),
    'k',
    1,
    experts,
    MOEFY_PASS,
    ffn.node,
  );
  return { experts, k };
}

/** Checks given groups: `experts` non-empty lists that partition the `hidden` neurons. */
function checkGroups(groups: unknown, experts: number, ffn: FeedForward): number[][] {
  const seen = new Uint8Array(ffn.hidden);
  const neuron = (j: unknown): boolean => {
    if (typeof j !== 'number' || !Number.isInteger(j) || j < 0 || j >= ffn.hidden || seen[j] === 1)
      return false;
    seen[j] = 1;
    return true;
  };
  const valid =
    Array.isArray(groups) &&
    groups.length === experts &&
    groups.every((g) => Array.isArray(g) && g.length > 0 && g.every(neuron)) &&
    seen.every((v) => v === 1);
  if (!valid) {
    fail(
      `'groups' must be ${experts} non-empty lists of neuron indices (0 to ${ffn.hidden - 1}) that hold every neuron of '${ffn.node}' once`,
      ffn.node,
    );
  }
  return (groups as number[][]).map((g) => [...g]);
}

/**
 * MoEfication's balanced clustering: each hidden neuron is the vector of its input weights (a
 * column of the first kernel) with its bias; balanced k-means makes `experts` clusters of
 * `hidden / experts` neurons each. Each group lists its neurons in ascending order.
 */
function clusterNeurons(
  kernel: Float32Array,
  bias: Float32Array | undefined,
  ffn: FeedForward,
  experts: number,
  seed: number,
): number[][] {
  const { inputSize: d, hidden } = ffn;
  const dims = d + (bias === undefined ? 0 : 1);
  const rows = new Float32Array(hidden * dims);
  for (let j = 0; j < hidden; j++) {
    for (let i = 0; i < d; i++) rows[j * dims + i] = kernel[i * hidden + j]!;
    if (bias !== undefined) rows[j * dims + d] = bias[j]!;
  }
  const { assignment } = balancedKMeans(rows, dims, { k: experts, seed });
  const groups: number[][] = Array.from({ length: experts }, () => []);
  assignment.forEach((c, j) => {
    groups[c]!.push(j);
  });
  return groups;
}

/**
 * `t`'s slices at `ids` along `axis`, in storage of their own: wasm's gather hands back a reshaped
 * view whose recorded shape is its internal rank-4 one, which wasm's fused kernels then read.
 */
function gathered(t: tf.Tensor, ids: tf.Tensor1D, axis: number): tf.Tensor {
  return tf.tidy(() => tf.clone(tf.gather(t, ids, axis)));
}

function contiguousGroups(hidden: number, experts: number): number[][] {
  const size = hidden / experts;
  return Array.from({ length: experts }, (_, e) => Array.from({ length: size }, (_, i) => e * size + i));
}

/**
 * MoEfication (Zhang et al. 2022): splits a trained feed-forward block (`Dense(d_ff, act)` then
 * `Dense(d_out)`, or with a `core.Activation` between, as Keras imports give) into N experts that
 * each hold d_ff / N of its hidden neurons, grouped by balanced k-means of the neurons' input
 * weights (`'cluster'`) or in order (`'contiguous'`). One `moe-router.MoE` node, named after the
 * first Dense, replaces the block: expert e is `Dense(d_ff / N, act)` then `Dense(d_out)` without
 * bias, holding the slices of the two kernels; the second Dense's bias becomes the layer's
 * `outputBias`; the selected experts are summed unweighted (`combine: 'unit'`), so with every
 * expert active (`moeOptions({ k: N })`) the layer computes the block's outputs up to rounding.
 * The router is MoEfication's similarity router: expert e's column is the mean input weight
 * vector of its neurons, so `x · centroid` estimates how strongly its neurons fire and top-k is
 * meaningful before any tuning. A second Dense with an activation leaves a `core.Activation`
 * after the layer. `'cluster'` reads the first kernel synchronously: {@link moefyModel} reads it
 * asynchronously (better on GPU backends) and passes `groups`.
 */
export function moefy(graph: Graph, options: MoefyOptions, context: PassContext): PassResult {
  const { runtime } = context;
  const ffn: LocatedFeedForward = locateFeedForward(runtime, graph, options?.node, MOEFY_PASS);
  const { experts, k } = checkSplit(ffn, options);
  const { w1, b1, w2, b2 } = feedForwardWeights(context, ffn, MOEFY_PASS);
  const groups =
    options.groups !== undefined
      ? checkGroups(options.groups, experts, ffn)
      : (options.method ?? 'cluster') === 'contiguous'
        ? contiguousGroups(ffn.hidden, experts)
        : clusterNeurons(
            w1.dataSync() as Float32Array,
            b1?.dataSync() as Float32Array | undefined,
            ffn,
            experts,
            options.seed ?? 0,
          );
  const node = ffn.node;
  const attrs: Attrs = {
    ...routerAttrs(options),
    experts: groups.map((g) => expertGraph(runtime, ffn, g.length)),
    k,
    combine: 'unit',
    outputBias: b2 !== undefined,
  };
  const moeGraph = replaceFeedForward(runtime, graph, ffn, attrs);
  const weights = new Map<string, tf.Tensor>();
  try {
    const ids = groups.map((g) => tf.tensor1d(g, 'int32'));
    try {
      // Expert e's router column: the mean input weight vector of its neurons.
      weights.set(
        `${node}/kernel`,
        tf.tidy(() =>
          tf.stack(
            ids.map((i) => tf.mean(tf.gather(w1, i, 1), 1)),
            1,
          ),
        ),
      );
      if (b2 !== undefined) weights.set(`${node}/bias`, tf.clone(b2));
      ids.forEach((i, e) => {
        const at = `${node}/experts/${e}`;
        weights.set(`${at}/up/kernel`, gathered(w1, i, 1));
        if (b1 !== undefined) weights.set(`${at}/up/bias`, gathered(b1, i, 0));
        weights.set(`${at}/down/kernel`, gathered(w2, i, 0));
      });
    } finally {
      tf.dispose(ids);
    }
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
  return { graph: moeGraph, weights };
}

/** The pass `moe-router.moefy` ({@link moefy}). */
export const moefyPass = definePass<MoefyOptions>({
  name: MOEFY_PASS,
  description:
    'MoEfication: splits a trained Dense -> Dense feed-forward block into experts of its clustered hidden neurons, with a similarity router (all experts = the dense block).',
  run: moefy,
});

/** Throws unless `model`'s runtime holds the MoE op. */
export function requireMoeRuntime(model: Model, what: string): void {
  if (!model.runtime.hasOp(MOE_OP)) {
    throw new DynnError(
      'INVALID_OPTION',
      `${what} needs a model whose runtime includes moeRouter(): createRuntime({ plugins: [moeRouter()] }), then create, load or import the model with it.`,
    );
  }
}

/**
 * A MoEfied copy of `model` (its runtime must include `moeRouter()`): the pass
 * `moe-router.moefy` on one feed-forward block, with the neurons' clustering computed from
 * weights read asynchronously. `model` is left as it was. Tune it briefly at its top-k (core
 * `fit`) to recover most of the dense accuracy.
 *
 * @example
 * ```ts
 * const moe = await moefyModel(model, { node: 'ffn1', experts: 8, k: 2 });
 * const all = await moe.run(x, { options: moeOptions({ k: 8 }) }); // = model.run(x), up to rounding
 * ```
 */
export async function moefyModel(model: Model, options: MoefyOptions): Promise<Model> {
  requireMoeRuntime(model, 'moefyModel');
  let groups = options?.groups;
  if (groups === undefined && (options?.method ?? 'cluster') === 'cluster') {
    const ffn = locateFeedForward(model.runtime, model.graph, options?.node, MOEFY_PASS);
    const { experts } = checkSplit(ffn, options);
    const param = (c: LocatedFeedForward['first'], local: string) =>
      c.params.find((p) => p.local === local && p.variant === undefined)?.info.name;
    const kernel = model.params.get(param(ffn.first, 'kernel')!)!;
    const biasName = param(ffn.first, 'bias');
    const bias = biasName === undefined ? undefined : model.params.get(biasName);
    groups = clusterNeurons(
      (await kernel.data()) as Float32Array,
      bias === undefined ? undefined : ((await bias.data()) as Float32Array),
      ffn,
      experts,
      options.seed ?? 0,
    );
  }
  return applyPass<MoefyOptions>(model, MOEFY_PASS, {
    ...options,
    ...(groups === undefined ? {} : { groups }),
  });
}
