import {
  defineOp,
  gatherRows,
  type OpContext,
  type ParamSpec,
  type SubGraph,
  scatterAddRows,
  stopGradient,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { readMoeOptions } from './options.js';
import {
  type DropPolicy,
  ROUTER_KINDS,
  type RouterKind,
  type Routing,
  routeTokens,
  softmaxRows,
} from './routing.js';

/** The op type of {@link moeOp}. */
export const MOE_OP = 'moe-router.MoE';

/**
 * How an expert's output is weighted when the outputs are summed per token.
 *
 * - `'softmax'`: by the router's probability for the expert (Switch, GShard's raw gates).
 * - `'normalized'`: by that probability divided by the sum over the experts the token chose
 *   (Mixtral, GShard top-2): the weights of a token sum to 1, so identical experts (sparse
 *   upcycling) give the dense layer's output.
 * - `'unit'`: by 1, with the probability's gradient passed straight through (`1 + p - stop(p)`):
 *   the selected experts' outputs are summed unweighted, so with every expert active a MoEfied
 *   layer equals the dense one whatever the router, which still learns.
 * - `'auto'`: `'normalized'` for token-choice routers with `k >= 2`, else `'softmax'` (with one
 *   expert per token a normalised weight is always 1 and the router would get no gradient).
 */
export type CombineMode = 'auto' | 'softmax' | 'normalized' | 'unit';

/**
 * Router noise in training (none at inference): `'jitter'` multiplies the router's input by
 * uniform noise in `[1 - eps, 1 + eps]` (Switch Transformer); `'gaussian'` adds standard normal
 * noise scaled by a learned `softplus(x W_noise)` to the logits (noisy top-k gating, Shazeer et
 * al. 2017).
 */
export type RouterNoise = 'none' | 'jitter' | 'gaussian';

/** Attributes of {@link moeOp}. */
export type MoeAttrs = {
  /** The experts: sub-graphs of one input `[tokens, d]` and one output `[tokens, d_out]`. */
  experts: SubGraph[];
  /** Shared experts (DeepSeekMoE): run on every token and added; default none. */
  shared: SubGraph[];
  /** How tokens are assigned to experts. */
  router: RouterKind;
  /** Experts per token (token choice) or per token on average (expert choice). */
  k: number;
  /** How expert outputs are weighted. */
  combine: CombineMode;
  /** Training capacity per expert as a factor of an even share of `tokens * k`; 0: dropless. */
  capacityFactor: number;
  /** Inference capacity factor; 0: dropless (the default). */
  evalCapacityFactor: number;
  /** Which token-expert pairs a full expert drops. */
  dropPolicy: DropPolicy;
  /** Router noise in training. */
  noise: RouterNoise;
  /** Width of the jitter noise (`noise: 'jitter'`). */
  noiseEpsilon: number;
  /** Sinkhorn iterations of the `'sinkhorn'` router in training. */
  sinkhornIterations: number;
  /** Weight of the load-balancing loss (Switch Transformer); 0: off. */
  balanceLoss: number;
  /** Weight of the router z-loss (ST-MoE); 0: off. */
  zLoss: number;
  /** Step of the auxiliary-loss-free bias balancing (DeepSeek-V3); 0: off. */
  biasUpdateRate: number;
  /** Adds a learned bias to every token's output (the dense layer's bias after MoEfication). */
  outputBias: boolean;
};

/** What a MoE layer's decide step hands its forward: plain data. */
export interface MoeDecision {
  /** Where each token goes. */
  routing: Routing;
  /** Experts per token in this call. */
  k: number;
  /** Jitter multiplying the router's input, `[tokens * d]` (training with `'jitter'`). */
  jitter?: Float32Array;
  /** Standard normal draws for the logits, `[tokens * experts]` (training with `'gaussian'`). */
  noise?: Float32Array;
  /** The load-balancing loss's value (unweighted). */
  balanceLoss: number;
  /** The router z-loss's value (unweighted). */
  zLoss: number;
  /** The balancing bias the choice used, per expert (with bias balancing). */
  expertBias?: number[];
}

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** The combine mode a layer uses, with `'auto'` resolved. */
export function resolvedCombine(
  attrs: Pick<MoeAttrs, 'combine' | 'router' | 'k'>,
): Exclude<CombineMode, 'auto'> {
  if (attrs.combine !== 'auto') return attrs.combine;
  return attrs.router !== 'expert-choice' && attrs.k >= 2 ? 'normalized' : 'softmax';
}

function checkAttrs(attrs: MoeAttrs): void {
  const experts = attrs.experts.length;
  if (experts < 1) throw new Error('a MoE layer needs at least one expert');
  if (attrs.router === 'switch' && attrs.k !== 1)
    throw new Error(`the 'switch' router is top-1: set k to 1 (got ${attrs.k})`);
  if (attrs.router === 'gshard' && attrs.k !== 2)
    throw new Error(`the 'gshard' router is top-2: set k to 2 (got ${attrs.k})`);
  if (attrs.router !== 'expert-choice' && attrs.k > experts) {
    throw new Error(`k is ${attrs.k} but the layer has ${experts} experts; use k <= ${experts}`);
  }
  if (attrs.router === 'expert-choice' && attrs.biasUpdateRate > 0) {
    throw new Error(
      'bias balancing is for token-choice routers; expert choice is balanced by construction (set biasUpdateRate to 0)',
    );
  }
}

/** The feature sizes of a sub-graph that maps `[tokens, d]` to `[tokens, d_out]`. */
function checkExpert(
  graph: { inputs: readonly ValueInfo[]; outputs: readonly ValueInfo[] },
  d: number,
  where: string,
): number {
  const [input] = graph.inputs;
  const [output] = graph.outputs;
  if (graph.inputs.length !== 1 || input!.shape.length !== 2 || input!.shape[1] !== d) {
    throw new Error(`${where} must take one input [tokens, ${d}] (the layer's feature size)`);
  }
  if (graph.outputs.length !== 1 || output!.shape.length !== 2 || typeof output!.shape[1] !== 'number') {
    throw new Error(`${where} must give one output [tokens, d_out] with a known d_out`);
  }
  if (output!.dtype !== 'float32') throw new Error(`${where} must give a float32 output`);
  return output!.shape[1];
}

/**
 * The auxiliary losses' values for a call, unweighted, computed on the host for the report: the
 * load-balancing loss `experts * sum(share of choices * mean probability)` (1 when balanced) and
 * the z-loss `mean(logsumexp(logits)^2)`.
 */
function routerLosses(
  logits: Float32Array,
  probs: Float32Array,
  routing: Routing,
  k: number,
): Pick<MoeDecision, 'balanceLoss' | 'zLoss'> {
  const { tokens, experts } = routing;
  const meanProb = new Float64Array(experts);
  let z = 0;
  for (let t = 0; t < tokens; t++) {
    let max = -Infinity;
    for (let e = 0; e < experts; e++) {
      meanProb[e]! += probs[t * experts + e]! / tokens;
      max = Math.max(max, logits[t * experts + e]!);
    }
    let sum = 0;
    for (let e = 0; e < experts; e++) sum += Math.exp(logits[t * experts + e]! - max);
    z += (max + Math.log(sum)) ** 2 / tokens;
  }
  let balance = 0;
  for (let e = 0; e < experts; e++) balance += (routing.demand[e]! / Math.max(1, tokens * k)) * meanProb[e]!;
  return { balanceLoss: experts * balance, zLoss: tokens === 0 ? 0 : z };
}

/** Router logits `[tokens, experts]` on the tape: `(x * jitter) W (+ noise * softplus(x W_noise))`. */
function routerLogits(
  ctx: OpContext<MoeAttrs>,
  x2: tf.Tensor2D,
  decision?: Pick<MoeDecision, 'jitter' | 'noise'>,
) {
  return tf.tidy(() => {
    const input = decision?.jitter ? tf.mul(x2, tf.tensor2d(decision.jitter, x2.shape)) : x2;
    const logits = tf.matMul(input, ctx.params.kernel as tf.Tensor2D);
    if (decision?.noise === undefined) return logits;
    const scale = tf.softplus(tf.matMul(input, ctx.params.noiseKernel as tf.Tensor2D));
    return tf.add(logits, tf.mul(tf.tensor2d(decision.noise, [x2.shape[0], logits.shape[1]!]), scale));
  });
}

function draws(count: number, draw: () => number): Float32Array {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = draw();
  return values;
}

/** The weight of each token-expert pair, `[tokens, experts]`, on the tape. */
function combineWeights(
  mode: Exclude<CombineMode, 'auto'>,
  probs: tf.Tensor2D,
  routing: Routing,
): tf.Tensor2D {
  if (mode === 'softmax') return probs;
  if (mode === 'unit') return tf.add(tf.sub(probs, stopGradient(probs)), 1);
  const chosen = tf.tensor2d(Float32Array.from(routing.chosen), probs.shape);
  const masked = tf.mul(probs, chosen);
  return tf.div(masked, tf.maximum(tf.sum(masked, 1, true), 1e-12));
}

/**
 * Adds each part's rows (`parts[i]` `[rows[i].length, dOut]`) into a zero `[tokens, dOut]` at the
 * token rows `rows[i]` (`ids[i]` on the backend; a token in several parts gets their sum): one scatter-add forward, and as
 * gradient one row gather of `dy` per part. Written as one tape node so that no `concat` is taped:
 * the gradient of a concat is a `SplitV`, whose wasm kernel copies its whole input once per part
 * (8 experts, 2,048 rows of 256: ~20 ms). Measured on wasm, d 256, 8 experts of 1,024, top-2, one
 * SGD step: 291 -> 274 ms at 1,024 tokens, 1,051 -> 914 ms at 4,096.
 */
function scatterParts(
  parts: tf.Tensor[],
  rows: readonly Int32Array[],
  ids: readonly tf.Tensor[],
  tokens: number,
  dOut: number,
): tf.Tensor {
  const all = new Int32Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rows) {
    all.set(r, at);
    at += r.length;
  }
  const op = tf.customGrad(
    // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
    (...args: any[]) => {
      const save = args.pop() as (tensors: tf.Tensor[]) => void;
      save([...ids]);
      const updates = args as tf.Tensor[];
      return {
        value: tf.tidy(() =>
          scatterAddRows(
            tf.zeros([tokens, dOut]),
            tf.tensor1d(all, 'int32'),
            updates.length === 1 ? updates[0]! : tf.concat(updates),
          ),
        ),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => saved.map((r) => gatherRows(dy, r)),
      };
    },
  ) as unknown as (...args: tf.Tensor[]) => tf.Tensor;
  return op(...parts);
}

/**
 * `moe-router.MoE`: a mixture-of-experts layer whose experts are sub-graphs (any block, not only
 * an FFN). A router (`x W`, softmax over experts) assigns each token to a few experts; the decide
 * step reads the router's probabilities back and makes the assignment on the host (top-k, Switch,
 * GShard, expert choice or Sinkhorn, with capacity and token dropping); the forward then gathers
 * each expert's tokens, runs the expert on those rows only, weights its outputs and adds them
 * back per token with one scatter-add. No expert ever computes a token it was not given.
 *
 * - input: `x` `[..., d]` (every position a token); output `[..., d_out]`
 * - params: `kernel` `[d, experts]`, `noiseKernel` (gaussian noise), `bias` `[d_out]`
 *   (`outputBias`), then each expert's, named `<node>/experts/<i>/<sub-node>/<name>`
 * - state: `expertBias` `[experts]` with bias balancing
 * - training: the auxiliary losses (balance, z) are added to the objective; bias balancing moves
 *   the bias of overloaded experts down and of underloaded ones up after each step
 * - report, per call: `load` (tokens per expert), `demand` (before capacity), `dropped` (pairs),
 *   `unrouted` (tokens no expert computed), `capacity`, `balanceLoss`, `zLoss`, `expertBias`,
 *   `assignment` (with the run option `recordAssignment`); the experts' nodes report the FLOPs
 *   they really executed
 * - FLOPs: statically, the router plus every expert on every token (what computing every expert
 *   and masking costs, the report's `fullFlops`); in a run, the router, the weighting of the
 *   routed rows, and the expert nodes' own counts of the rows they computed
 */
export const moeOp = defineOp<MoeAttrs>({
  type: MOE_OP,
  version: 1,
  description:
    'Mixture of experts: routes each token to a few expert sub-graphs and computes only those: [..., d] -> [..., d_out].',
  attrs: {
    experts: { kind: 'graphs', doc: 'the experts: one input [tokens, d], one output [tokens, d_out] each' },
    shared: { kind: 'graphs', default: [], doc: 'shared experts, run on every token and added' },
    router: { kind: 'enum', values: ROUTER_KINDS, default: 'top-k', doc: 'how tokens are assigned' },
    k: { kind: 'int', min: 1, default: 2, doc: 'experts per token (average per token for expert choice)' },
    combine: {
      kind: 'enum',
      values: ['auto', 'softmax', 'normalized', 'unit'],
      default: 'auto',
      doc: 'how expert outputs are weighted',
    },
    capacityFactor: { kind: 'float', min: 0, default: 0, doc: 'training capacity factor; 0: dropless' },
    evalCapacityFactor: { kind: 'float', min: 0, default: 0, doc: 'inference capacity factor; 0: dropless' },
    dropPolicy: {
      kind: 'enum',
      values: ['position', 'probs'],
      default: 'position',
      doc: 'which pairs a full expert drops',
    },
    noise: {
      kind: 'enum',
      values: ['none', 'jitter', 'gaussian'],
      default: 'none',
      doc: 'router noise in training',
    },
    noiseEpsilon: { kind: 'float', min: 0, max: 1, default: 0.01, doc: 'jitter width' },
    sinkhornIterations: { kind: 'int', min: 1, default: 8, doc: 'Sinkhorn iterations (sinkhorn router)' },
    balanceLoss: { kind: 'float', min: 0, default: 0, doc: 'load-balancing loss weight' },
    zLoss: { kind: 'float', min: 0, default: 0, doc: 'router z-loss weight' },
    biasUpdateRate: { kind: 'float', min: 0, default: 0, doc: 'auxiliary-loss-free bias balancing step' },
    outputBias: { kind: 'bool', default: false, doc: 'add a learned bias to every output' },
  },
  inputs: { min: 1 },
  params(attrs, [x]) {
    const d = x!.shape.at(-1) as number;
    const experts = attrs.experts.length;
    const specs: ParamSpec[] = [
      { name: 'kernel', shape: [d, experts], init: { kind: 'normal', mean: 0, std: 0.02 } },
    ];
    if (attrs.noise === 'gaussian')
      specs.push({ name: 'noiseKernel', shape: [d, experts], init: { kind: 'zeros' } });
    if (attrs.outputBias) {
      specs.push({
        name: 'bias',
        shape: [attrs.experts[0]!.outputs[0]!.shape[1] as number],
        init: { kind: 'zeros' },
      });
    }
    return specs;
  },
  state(attrs) {
    return attrs.biasUpdateRate > 0
      ? [{ name: 'expertBias', shape: [attrs.experts.length], init: { kind: 'zeros' } }]
      : [];
  },
  inferShape(attrs, [x], ctx) {
    const d = x!.shape.at(-1);
    if (typeof d !== 'number' || x!.shape.length < 2) {
      throw new Error(
        `a MoE layer needs an input [..., d] with a known feature size d, got [${x!.shape.join(', ')}]`,
      );
    }
    if (x!.dtype !== 'float32') throw new Error(`a MoE layer needs a float32 input, got ${x!.dtype}`);
    checkAttrs(attrs);
    let dOut: number | undefined;
    const check = (attr: 'experts' | 'shared', index: number) => {
      const size = checkExpert(ctx!.subGraph(attr, index), d, `${attr}[${index}]`);
      if (dOut !== undefined && size !== dOut) {
        throw new Error(
          `${attr}[${index}] gives ${size} features but the first expert gives ${dOut}; all must agree`,
        );
      }
      dOut = size;
    };
    for (let i = 0; i < attrs.experts.length; i++) check('experts', i);
    for (let i = 0; i < attrs.shared.length; i++) check('shared', i);
    return [{ shape: [...x!.shape.slice(0, -1), dOut!], dtype: 'float32' }];
  },
  decidesInTraining: true,
  async decide(ctx, [x]): Promise<MoeDecision> {
    const { attrs } = ctx;
    const options = readMoeOptions(ctx.options);
    const experts = attrs.experts.length;
    const k = options.k ?? attrs.k;
    checkAttrs({ ...attrs, k });
    const d = x!.shape.at(-1)!;
    const tokens = x!.size / d;
    const rng = ctx.rng();
    const training = ctx.training;
    const jitter =
      training && attrs.noise === 'jitter'
        ? draws(tokens * d, () => 1 - attrs.noiseEpsilon + 2 * attrs.noiseEpsilon * rng.next())
        : undefined;
    const noise =
      training && attrs.noise === 'gaussian' ? draws(tokens * experts, () => rng.normal()) : undefined;
    const logitsTensor = tf.tidy(() =>
      routerLogits(ctx, tf.reshape(x!, [tokens, d]) as tf.Tensor2D, {
        ...(jitter ? { jitter } : {}),
        ...(noise ? { noise } : {}),
      }),
    );
    const logits = (await logitsTensor.data()) as Float32Array;
    logitsTensor.dispose();
    for (let i = 0; i < logits.length; i++) {
      if (!Number.isFinite(logits[i]!)) {
        throw new Error(
          `the router's logit for token ${Math.floor(i / experts)} is ${logits[i]}: the input holds NaN or infinite values`,
        );
      }
    }
    const probs = softmaxRows(logits, experts);
    const bias = ctx.state.expertBias ? ((await ctx.state.expertBias.data()) as Float32Array) : undefined;
    const capacityFactor = training
      ? attrs.capacityFactor
      : (options.capacityFactor ?? attrs.evalCapacityFactor);
    const routing = routeTokens(
      probs,
      experts,
      {
        router: attrs.router,
        k,
        capacityFactor,
        dropPolicy: attrs.dropPolicy,
        training,
        sinkhornIterations: attrs.sinkhornIterations,
      },
      { ...(bias ? { bias } : {}), logits, rng },
    );
    return {
      routing,
      k,
      ...(jitter ? { jitter } : {}),
      ...(noise ? { noise } : {}),
      ...(bias ? { expertBias: Array.from(bias) } : {}),
      ...routerLosses(logits, probs, routing, k),
    };
  },
  forward(ctx, [x]) {
    const decision = ctx.decision as MoeDecision | undefined;
    if (decision === undefined) throw new Error('a MoE layer runs after its decide step; none was made');
    const { attrs } = ctx;
    const { routing } = decision;
    const experts = attrs.experts.length;
    const d = x!.shape.at(-1)!;
    const tokens = routing.tokens;
    const options = readMoeOptions(ctx.options);
    ctx.record('load', Array.from(routing.load));
    ctx.record('demand', Array.from(routing.demand));
    ctx.record('dropped', routing.droppedPairs);
    ctx.record('unrouted', routing.unroutedTokens);
    ctx.record('capacity', routing.capacity);
    ctx.record('balanceLoss', decision.balanceLoss);
    ctx.record('zLoss', decision.zLoss);
    if (decision.expertBias) ctx.record('expertBias', decision.expertBias);
    if (options.recordAssignment) {
      const assignment: number[][] = Array.from({ length: tokens }, () => []);
      routing.expertTokens.forEach((rows, e) => {
        for (const t of rows) assignment[t]!.push(e);
      });
      ctx.record('assignment', assignment);
    }
    const routed = routing.load.reduce((a, b) => a + b, 0);
    const mode = resolvedCombine({ ...attrs, k: decision.k });
    const [output, ...losses] = tf.tidy(() => {
      const x2 = tf.reshape(x!, [tokens, d]) as tf.Tensor2D;
      const logits = routerLogits(ctx, x2, decision);
      const probs = tf.softmax(logits) as tf.Tensor2D;
      const weights = tf.reshape(combineWeights(mode, probs, routing), [tokens * experts]);
      const parts: tf.Tensor[] = [];
      const rows: Int32Array[] = [];
      const rowIds: tf.Tensor[] = [];
      routing.expertTokens.forEach((tokenRows, e) => {
        if (tokenRows.length === 0) return;
        const ids = tf.tensor1d(tokenRows, 'int32');
        rowIds.push(ids);
        const [y] = ctx.runGraph('experts', [gatherRows(x2, ids)], { index: e });
        const pairs = tf.tensor1d(
          Int32Array.from(tokenRows, (t) => t * experts + e),
          'int32',
        );
        parts.push(tf.mul(y!, tf.reshape(gatherRows(weights, pairs), [tokenRows.length, 1])));
        rows.push(tokenRows);
      });
      // Declared by the sub-graph and checked against its inferred output when the graph was built.
      const dOut = attrs.experts[0]!.outputs[0]!.shape[1] as number;
      let y: tf.Tensor =
        parts.length > 0 ? scatterParts(parts, rows, rowIds, tokens, dOut) : tf.zeros([tokens, dOut]);
      attrs.shared.forEach((_, s) => {
        y = tf.add(y, ctx.runGraph('shared', [x2], { index: s })[0]!);
      });
      if (attrs.outputBias) y = tf.add(y, ctx.params.bias!);
      const out = tf.reshape(y, [...x!.shape.slice(0, -1), dOut]);
      const losses: tf.Tensor[] = [];
      if (ctx.training && attrs.balanceLoss > 0) {
        // Switch Transformer: experts * sum over experts of (share of choices) * (mean probability).
        const share = Float32Array.from(routing.demand, (n) => n / Math.max(1, tokens * decision.k));
        losses.push(
          tf.mul(experts * attrs.balanceLoss, tf.sum(tf.mul(tf.tensor1d(share), tf.mean(probs, 0)))),
        );
      }
      if (ctx.training && attrs.zLoss > 0) {
        losses.push(tf.mul(attrs.zLoss, tf.mean(tf.square(tf.logSumExp(logits, 1)))));
      }
      return [out, ...losses];
    });
    // Weighting and adding each routed row; the bytes gathered in and scattered out.
    const dOut = output!.shape.at(-1)!;
    ctx.addCompute({ flops: 2 * routed * dOut, bytes: 4 * routed * (d + dOut) });
    const names = [
      ...(ctx.training && attrs.balanceLoss > 0 ? ['balance'] : []),
      ...(ctx.training && attrs.zLoss > 0 ? ['z'] : []),
    ];
    losses.forEach((loss, i) => {
      ctx.addLoss(loss as tf.Scalar, names[i]);
    });
    if (ctx.training && attrs.biasUpdateRate > 0) {
      // DeepSeek-V3: an overloaded expert's bias goes down by the step, an underloaded one's up.
      const mean = routing.demand.reduce((a, b) => a + b, 0) / experts;
      const step = Float32Array.from(routing.demand, (n) => attrs.biasUpdateRate * Math.sign(mean - n));
      ctx.updateState(
        'expertBias',
        tf.tidy(() => tf.add(ctx.state.expertBias!, tf.tensor1d(step))),
      );
    }
    return [output!];
  },
  flops(attrs, [x], _, ctx) {
    const d = x!.at(-1)!;
    const tokens = product(x!) / d;
    const experts = attrs.experts.length;
    const router = 2 * tokens * d * experts + 4 * tokens * experts;
    // Every token through every expert, as computing every expert and masking would: a run's
    // report counts only what the experts' nodes executed, so its `flops` against this
    // `fullFlops` is the saving of routing.
    let dense = 0;
    for (let e = 0; e < attrs.experts.length; e++) dense += ctx!.subGraphFlops('experts', [[tokens, d]], e);
    for (let s = 0; s < attrs.shared.length; s++) dense += ctx!.subGraphFlops('shared', [[tokens, d]], s);
    return router + dense;
  },
});
