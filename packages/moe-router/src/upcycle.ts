import {
  type Attrs,
  applyPass,
  createRng,
  definePass,
  type Graph,
  initTensor,
  type Model,
  type PassContext,
  type PassResult,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  checkInteger,
  checkOptionKeys,
  expertGraph,
  feedForwardWeights,
  locateFeedForward,
  type MoeRouterOptions,
  ROUTER_OPTION_KEYS,
  replaceFeedForward,
  routerAttrs,
} from './feed-forward.js';
import { requireMoeRuntime } from './moefy.js';

/** The name of the sparse upcycling pass. */
export const UPCYCLE_PASS = 'moe-router.upcycle';

/** The most experts {@link upcycle} makes: each is a whole copy of the block. */
const MAX_EXPERTS = 1024;

/** Options of the pass `moe-router.upcycle` and of {@link upcycleModel}; the router's choices besides. */
export interface UpcycleOptions extends MoeRouterOptions {
  /**
   * The first Dense of the feed-forward block (`d -> d_ff`, with an activation or followed by a
   * `core.Activation`); its only reader must be the second Dense (see {@link findFeedForwards}).
   */
  node: string;
  /** Number of experts N (2 or more): each starts as a copy of the whole block. */
  experts: number;
  /**
   * Experts per token (default 2, or 1 for the `'switch'` router). With one expert per token the
   * normalised weight is always 1 and only a balance loss trains the router: prefer 2 or more.
   */
  k?: number;
  /** Seed of the router's initial kernel (default 0). */
  seed?: number;
}

const UPCYCLE_KEYS = ['node', 'experts', 'k', 'seed', ...ROUTER_OPTION_KEYS];

/** Standard deviation of the router's initial kernel: small, so that routing starts near uniform. */
const ROUTER_STD = 0.02;

/**
 * Sparse upcycling (Komatsuzaki et al. 2023): turns a trained feed-forward block into a
 * `moe-router.MoE` node (named after the first Dense) of N experts that are each a copy of the
 * whole block (`Dense(d_ff, act)`, then `Dense(d_out)` without bias; the second Dense's bias
 * becomes the layer's `outputBias`), combined with normalised weights (`combine: 'normalized'`:
 * a token's weights sum to 1). At initialisation the layer therefore computes the dense block's
 * outputs whatever `k` and the router; the router's kernel starts small and normal (seeded) and
 * is trained from scratch, and training lets the copies diverge into specialists. A second Dense
 * with an activation leaves a `core.Activation` after the layer.
 */
export function upcycle(graph: Graph, options: UpcycleOptions, context: PassContext): PassResult {
  const { runtime } = context;
  const ffn = locateFeedForward(runtime, graph, options?.node, UPCYCLE_PASS);
  checkOptionKeys(options, UPCYCLE_KEYS, UPCYCLE_PASS);
  const experts = checkInteger(options.experts, 'experts', 2, MAX_EXPERTS, UPCYCLE_PASS, ffn.node);
  const k = checkInteger(
    options.k ?? (options.router === 'switch' ? 1 : 2),
    'k',
    1,
    experts,
    UPCYCLE_PASS,
    ffn.node,
  );
  const seed = checkInteger(
    options.seed ?? 0,
    'seed',
    Number.MIN_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER,
    UPCYCLE_PASS,
    ffn.node,
  );
  const { w1, b1, w2, b2 } = feedForwardWeights(context, ffn, UPCYCLE_PASS);
  const node = ffn.node;
  const attrs: Attrs = {
    ...routerAttrs(options),
    experts: Array.from({ length: experts }, () => expertGraph(runtime, ffn, ffn.hidden)),
    k,
    combine: 'normalized',
    outputBias: b2 !== undefined,
  };
  const moeGraph = replaceFeedForward(runtime, graph, ffn, attrs);
  const weights = new Map<string, tf.Tensor>();
  try {
    weights.set(
      `${node}/kernel`,
      initTensor(
        { kind: 'normal', mean: 0, std: ROUTER_STD },
        [ffn.inputSize, experts],
        'float32',
        createRng(seed),
      ),
    );
    if (b2 !== undefined) weights.set(`${node}/bias`, tf.clone(b2));
    for (let e = 0; e < experts; e++) {
      const at = `${node}/experts/${e}`;
      weights.set(`${at}/up/kernel`, tf.clone(w1));
      if (b1 !== undefined) weights.set(`${at}/up/bias`, tf.clone(b1));
      weights.set(`${at}/down/kernel`, tf.clone(w2));
    }
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
  return { graph: moeGraph, weights };
}

/** The pass `moe-router.upcycle` ({@link upcycle}). */
export const upcyclePass = definePass<UpcycleOptions>({
  name: UPCYCLE_PASS,
  description:
    'Sparse upcycling: copies a trained Dense -> Dense feed-forward block into N experts with normalised weights (the dense outputs at init) and a router trained from scratch.',
  run: upcycle,
});

/**
 * An upcycled copy of `model` (its runtime must include `moeRouter()`): the pass
 * `moe-router.upcycle` on one feed-forward block. `model` is left as it was. It computes what
 * `model` computes until trained; train it (core `fit`) for the router to learn and the experts
 * to diverge.
 *
 * @example
 * ```ts
 * const moe = upcycleModel(model, { node: 'ffn1', experts: 4, k: 2, balanceLoss: 0.01 });
 * await fit(moe, data, { epochs: 2 });
 * ```
 */
export function upcycleModel(model: Model, options: UpcycleOptions): Model {
  requireMoeRuntime(model, 'upcycleModel');
  return applyPass<UpcycleOptions>(model, UPCYCLE_PASS, options);
}
