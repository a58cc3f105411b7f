import {
  type Attrs,
  type CompiledGraph,
  type CompiledNode,
  compileGraph,
  DynnError,
  type Graph,
  GraphBuilder,
  type GraphNode,
  type PassContext,
  type Runtime,
  requiredTensors,
  type SubGraph,
} from '@dynn/core';
import type * as tf from '@tensorflow/tfjs-core';
import { MOE_ROUTER_PLUGIN } from './identity.js';
import { MOE_OP, type MoeAttrs } from './moe-op.js';

/**
 * A feed-forward block of a graph, as MoEfication and sparse upcycling see it: a `core.Dense`
 * `d -> d_ff` (with an activation, or followed by a `core.Activation` node), read only by a
 * second `core.Dense` `d_ff -> d_out`.
 */
export interface FeedForward {
  /** The first Dense (`d -> d_ff`): the node the passes `moe-router.moefy` and `moe-router.upcycle` take. */
  node: string;
  /** The `core.Activation` node between the two Denses, if the block has one. */
  activation?: string;
  /** The second Dense (`d_ff -> d_out`), the only reader of the hidden layer. */
  output: string;
  /** Features of each token in (`d`). */
  inputSize: number;
  /** Hidden neurons (`d_ff`). */
  hidden: number;
  /** Features out (`d_out`). */
  outputSize: number;
}

/**
 * Router choices of a MoEfied or upcycled layer: any attribute of {@link MoeAttrs} but the
 * experts, `k` and the combine mode (each pass sets its own), at the op's defaults when left out.
 */
export type MoeRouterOptions = Partial<
  Pick<
    MoeAttrs,
    | 'router'
    | 'capacityFactor'
    | 'evalCapacityFactor'
    | 'dropPolicy'
    | 'noise'
    | 'noiseEpsilon'
    | 'sinkhornIterations'
    | 'balanceLoss'
    | 'zLoss'
    | 'biasUpdateRate'
  >
>;

/** The keys of {@link MoeRouterOptions}. */
export const ROUTER_OPTION_KEYS = [
  'router',
  'capacityFactor',
  'evalCapacityFactor',
  'dropPolicy',
  'noise',
  'noiseEpsilon',
  'sinkhornIterations',
  'balanceLoss',
  'zLoss',
  'biasUpdateRate',
] as const;

/** The router attributes `options` sets (those left undefined take the op's defaults). */
export function routerAttrs(options: MoeRouterOptions): Attrs {
  const attrs: Attrs = {};
  for (const key of ROUTER_OPTION_KEYS) {
    const value = options[key];
    if (value !== undefined) attrs[key] = value;
  }
  return attrs;
}

/** A feed-forward block found in a compiled graph, with its compiled nodes. */
export interface LocatedFeedForward extends FeedForward {
  /** The compiled top graph. */
  compiled: CompiledGraph;
  /** The first Dense, compiled. */
  first: CompiledNode;
  /** The activation node, compiled. */
  act?: CompiledNode;
  /** The second Dense, compiled. */
  second: CompiledNode;
}

/** The activations a split cannot carry: softmax mixes the hidden neurons. */
function mixes(c: CompiledNode | undefined, attr: 'activation' | 'fn'): boolean {
  return c !== undefined && c.attrs[attr] === 'softmax';
}

/**
 * The feed-forward block that starts at node `name` of `graph` (compiled once by the caller, or
 * here), or a {@link DynnError} naming the node, what it found and what would do instead.
 */
export function locateFeedForward(
  runtime: Runtime,
  graph: Graph,
  name: string,
  pass: string,
  compiledGraph?: CompiledGraph,
): LocatedFeedForward {
  const fail = (what: string, node?: string): never => {
    throw new DynnError('INVALID_OPTION', `${pass}: ${what}.`, node === undefined ? {} : { node });
  };
  if (typeof name !== 'string' || name === '') {
    return fail(`'node' must name the first Dense of a feed-forward block, got ${JSON.stringify(name)}`);
  }
  const compiled = compiledGraph ?? compileGraph(runtime, graph);
  const byName = new Map(compiled.nodes.map((c) => [c.node.name, c]));
  const first = byName.get(name);
  if (first === undefined) return fail(`the graph has no node ${JSON.stringify(name)} (see dynn inspect)`);
  if (first.def.type !== 'core.Dense') {
    fail(
      `node '${name}' is a ${first.def.type}; give the first core.Dense (d -> d_ff) of a feed-forward block`,
      name,
    );
  }
  const readers = new Map<string, CompiledNode[]>();
  for (const c of compiled.nodes) {
    for (const v of c.node.inputs) readers.set(v, [...(readers.get(v) ?? []), c]);
  }
  const outputs = new Set(graph.outputs.map((o) => o.name));
  /** The only node reading `from`'s output, or a failure saying who else does. */
  const soleReader = (from: CompiledNode): CompiledNode => {
    const value = from.node.outputs[0]!;
    const list = readers.get(value) ?? [];
    if (outputs.has(value)) {
      fail(
        `'${value}' (the output of '${from.node.name}') is a graph output; a feed-forward block's hidden layer must feed only its second Dense`,
        name,
      );
    }
    if (list.length !== 1) {
      fail(
        `'${value}' (the output of '${from.node.name}') is read by ${list.length === 0 ? 'no node' : list.map((c) => `'${c.node.name}' (${c.def.type})`).join(', ')}; ` +
          'a feed-forward block needs it read by one core.Dense (or one core.Activation, then one core.Dense) alone',
        name,
      );
    }
    return list[0]!;
  };
  let next = soleReader(first);
  let act: CompiledNode | undefined;
  if (next.def.type === 'core.Activation') {
    act = next;
    next = soleReader(act);
  }
  if (next.def.type !== 'core.Dense') {
    fail(
      `node '${name}' feeds '${next.node.name}' (${next.def.type}), not a core.Dense; moefy and upcycle take Dense -> [Activation] -> Dense blocks`,
      name,
    );
  }
  if (first.attrs.activation === 'linear' && act === undefined) {
    fail(
      `node '${name}' has no activation and no core.Activation follows it: two linear Denses are one matrix, with no neurons to split into experts`,
      name,
    );
  }
  if (mixes(first, 'activation') || mixes(act, 'fn')) {
    fail(
      `the hidden layer of '${name}' ends in a softmax, which mixes its neurons: a split into experts cannot reproduce it`,
      name,
    );
  }
  const inputSize = first.inputs[0]!.shape.at(-1) as number;
  return {
    node: name,
    ...(act === undefined ? {} : { activation: act.node.name }),
    output: next.node.name,
    inputSize,
    hidden: first.attrs.units as number,
    outputSize: next.attrs.units as number,
    compiled,
    first,
    ...(act === undefined ? {} : { act }),
    second: next,
  };
}

/**
 * The feed-forward blocks of a graph's top level, in node order: every `core.Dense` with an
 * activation (or followed by a `core.Activation`) whose output only a second `core.Dense` reads.
 * Blocks may overlap (in a deep MLP a Dense ends one block and starts the next): split one of two
 * overlapping blocks, not both.
 *
 * @example
 * ```ts
 * findFeedForwards(runtime, model.graph); // [{ node: 'ffn1', output: 'ffn2', inputSize: 16, hidden: 64, outputSize: 16 }]
 * ```
 */
export function findFeedForwards(runtime: Runtime, graph: Graph): FeedForward[] {
  const found: FeedForward[] = [];
  const compiled = compileGraph(runtime, graph);
  for (const node of graph.nodes) {
    if (node.op !== 'core.Dense') continue;
    try {
      const {
        compiled: _c,
        first: _f,
        act: _a,
        second: _s,
        ...block
      } = locateFeedForward(runtime, graph, node.name, 'findFeedForwards', compiled);
      found.push(block);
    } catch (error) {
      if (!(error instanceof DynnError) || error.code !== 'INVALID_OPTION') throw error;
    }
  }
  return found;
}

/**
 * An expert of a block: `[tokens, d]` through `up` (a Dense of `hidden` units with the first
 * Dense's activation and bias), `act` (a copy of the block's activation node, if any) and `down`
 * (a Dense to `d_out` without bias: the layer adds the second Dense's bias once, not per expert).
 */
export function expertGraph(runtime: Runtime, ffn: LocatedFeedForward, hidden: number): SubGraph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['tokens', ffn.inputSize]);
  let h = b.add(
    'core.Dense',
    x,
    { units: hidden, activation: ffn.first.attrs.activation!, useBias: ffn.first.attrs.useBias! },
    { name: 'up' },
  );
  if (ffn.act !== undefined) h = b.add('core.Activation', h, { ...ffn.act.node.attrs }, { name: 'act' });
  const y = b.add('core.Dense', h, { units: ffn.outputSize, useBias: false }, { name: 'down' });
  return b.subGraph({ y });
}

function freshName(base: string, taken: ReadonlySet<string>): string {
  let name = base;
  for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
  return name;
}

/**
 * `graph` with the block replaced by one `moe-router.MoE` node named after the first Dense,
 * reading its input and writing the second Dense's output. A second Dense with an activation
 * leaves a `core.Activation` node of its name after the layer. Params and state are redeclared
 * from the ops, and the graph records the moe-router op set.
 */
export function replaceFeedForward(
  runtime: Runtime,
  graph: Graph,
  ffn: LocatedFeedForward,
  attrs: Attrs,
): Graph {
  const output = ffn.second.node.outputs[0]!;
  const outputActivation = ffn.second.attrs.activation as string;
  const removed = new Set([ffn.node, ffn.output, ...(ffn.activation === undefined ? [] : [ffn.activation])]);
  const replacement: GraphNode[] = [];
  if (outputActivation === 'linear') {
    replacement.push({
      name: ffn.node,
      op: MOE_OP,
      inputs: [...ffn.first.node.inputs],
      outputs: [output],
      attrs,
    });
  } else {
    const inner = freshName(`${output}_moe`, new Set(ffn.compiled.values.keys()));
    replacement.push(
      { name: ffn.node, op: MOE_OP, inputs: [...ffn.first.node.inputs], outputs: [inner], attrs },
      {
        name: ffn.output,
        op: 'core.Activation',
        inputs: [inner],
        outputs: [output],
        attrs: { fn: outputActivation },
      },
    );
  }
  const nodes = graph.nodes.flatMap((n) =>
    n.name === ffn.node ? replacement : removed.has(n.name) ? [] : [n],
  );
  const rewritten: Graph = {
    ...graph,
    opsets: { ...graph.opsets, [MOE_ROUTER_PLUGIN.domain]: MOE_ROUTER_PLUGIN.opset },
    nodes,
    params: [],
    state: [],
  };
  const tensors = requiredTensors(compileGraph(runtime, rewritten));
  return { ...rewritten, params: tensors.params, state: tensors.state };
}

/** The weights of a block, read from the pass context (not copies: the caller must not dispose them). */
export interface FeedForwardWeights {
  /** The first Dense's kernel, `[d, d_ff]`. */
  w1: tf.Tensor2D;
  /** Its bias, `[d_ff]`, if it has one. */
  b1?: tf.Tensor1D;
  /** The second Dense's kernel, `[d_ff, d_out]`. */
  w2: tf.Tensor2D;
  /** Its bias, `[d_out]`, if it has one. */
  b2?: tf.Tensor1D;
}

/** The block's weights from the context, or a {@link DynnError} saying how to give them. */
export function feedForwardWeights(
  context: PassContext,
  ffn: LocatedFeedForward,
  pass: string,
): FeedForwardWeights {
  const get = (c: CompiledNode, local: string): tf.Tensor | undefined => {
    const t = c.params.find((p) => p.local === local && p.variant === undefined);
    if (t === undefined) return undefined;
    const weight = context.weights.get(t.info.name);
    if (weight === undefined) {
      throw new DynnError(
        'INVALID_OPTION',
        `${pass}: the weight '${t.info.name}' of node '${c.node.name}' was not given; the pass splits trained weights: ` +
          'run it on a model (runPass(runtime, name, model, options) or applyPass) rather than on a graph alone.',
        { node: c.node.name },
      );
    }
    return weight;
  };
  const w1 = get(ffn.first, 'kernel') as tf.Tensor2D;
  const b1 = get(ffn.first, 'bias') as tf.Tensor1D | undefined;
  const w2 = get(ffn.second, 'kernel') as tf.Tensor2D;
  const b2 = get(ffn.second, 'bias') as tf.Tensor1D | undefined;
  return { w1, w2, ...(b1 === undefined ? {} : { b1 }), ...(b2 === undefined ? {} : { b2 }) };
}

/**
 * Refuses option keys a pass does not know (a typo would otherwise be ignored silently), naming
 * the known ones.
 */
export function checkOptionKeys(options: object, known: readonly string[], pass: string): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass}: the options must be an object such as { node: 'ffn1', experts: 8 }.`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new DynnError('INVALID_OPTION', `${pass}: '${key}' is not an option; use ${known.join(', ')}.`);
    }
  }
}

/** Checks an integer option in `[min, max]`; throws a {@link DynnError} naming it and the node. */
export function checkInteger(
  value: unknown,
  what: string,
  min: number,
  max: number,
  pass: string,
  node: string,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass}: '${what}' must be an integer from ${min} to ${max} (node '${node}'), got ${JSON.stringify(value)}.`,
      { node },
    );
  }
  return value;
}
