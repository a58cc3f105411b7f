import {
  type ChannelGroup,
  channelGroups,
  compileGraph,
  DynnError,
  definePass,
  type Graph,
  type GraphNode,
  isDynnError,
  type PassContext,
  type PassResult,
  type Runtime,
  reorderChannels,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { NESTED_OP, type NestedAttrs, type NestedSpace } from './nested-op.js';
import { RESIDUAL_OP } from './residual-op.js';

/** The sorted-net plugin's identity, as graphs record it. */
export const SORTED_NET_PLUGIN = {
  /** The npm package that provides the ops. */
  name: '@dynn/sorted-net',
  /** The op domain: op types are `sorted-net.<Name>`. */
  domain: 'sorted-net',
  /** The op-set version graphs record. */
  opset: 1,
} as const;

/** Options of the pass `sorted-net.nest`. */
export interface NestOptions {
  /**
   * Channel counts are rounded to a multiple of this (default 1): one number for every knob, or
   * one per knob name (`<node>#<space>`, as {@link describeNesting} lists them) with `default`.
   */
  multiple?: number | Readonly<Record<string, number>>;
  /** The channel groups to nest (ids from `channelGroups`); default every group that can be. */
  groups?: readonly number[];
  /**
   * A new channel order per group id (most important first), as {@link channelImportance}
   * computes: channel `k` becomes what channel `order[k]` was, so every prefix is the best of its
   * size. Groups left out keep their order.
   */
  orders?: Readonly<Record<number, readonly number[]>>;
  /**
   * Kernel sizes elastic convolutions may run at (e.g. `[3, 5]`): every `Conv2D` and
   * `DepthwiseConv2D` with a square kernel of the largest size, `same` padding and no dilation
   * becomes elastic (a centre crop of its kernel). Default none.
   */
  kernelSizes?: readonly number[];
  /** Turn residual blocks (an `Add` of a skip input and a branch only it reads) into depth-nested blocks (default true). */
  depth?: boolean;
}

const KNOB_DEFAULT = 'default';

function multipleFor(options: NestOptions, knob: string): number {
  const m = options.multiple;
  const value = m === undefined ? 1 : typeof m === 'number' ? m : (m[knob] ?? m[KNOB_DEFAULT] ?? 1);
  if (!Number.isInteger(value) || value < 1) {
    throw new DynnError(
      'INVALID_OPTION',
      `sorted-net.nest: 'multiple' for knob '${knob}' must be an integer >= 1, got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

/** The width knob of a channel group: the first op channel space it crosses, `<node>#<space>`. */
export function knobName(node: string, space: string): string {
  return `${node}#${space}`;
}

type CompiledNode = ReturnType<typeof compileGraph>['nodes'][number];

const ELASTIC_OPS = new Set(['core.Conv2D', 'core.DepthwiseConv2D']);

/** The elastic kernel of a convolution node, or null when it cannot be one. */
function elasticKernel(c: CompiledNode, sizes: readonly number[]): NestedAttrs['kernel'] {
  const largest = sizes.at(-1)!;
  if (!ELASTIC_OPS.has(c.def.type)) return null;
  const attrs = c.attrs as { kernelSize: number[]; padding: string; dilations: number[] };
  const [kh, kw = kh] = attrs.kernelSize;
  if (kh !== largest || kw !== largest || attrs.padding !== 'same') return null;
  if (attrs.dilations.some((d) => d !== 1)) return null;
  const param = c.params.find(
    (p) => p.info.shape.length === 4 && p.info.shape[0] === kh && p.info.shape[1] === kw,
  );
  if (param === undefined) return null;
  return { key: c.node.name, param: param.local, sizes: [...sizes] } as NestedAttrs['kernel'];
}

/** Wraps the nodes whose channel spaces lie in `nested` groups, and elastic convolutions. */
function wrapNodes(
  runtime: Runtime,
  graph: Graph,
  compiled: ReadonlyMap<string, CompiledNode>,
  groups: readonly ChannelGroup[],
  nested: ReadonlySet<number>,
  options: NestOptions,
): Graph {
  const perNode = new Map<string, Record<string, NestedSpace>>();
  for (const group of groups) {
    if (!nested.has(group.id)) continue;
    const list = group.spaces;
    const first = list[0];
    if (first === undefined) continue;
    const knob = knobName(first.node, first.space);
    const multiple = multipleFor(options, knob);
    for (const { node, space, channelOf } of list) {
      const entry = perNode.get(node) ?? {};
      const identity = channelOf.every((c, j) => c === j);
      entry[space] = {
        knob,
        size: group.size,
        multiple,
        ...(identity ? {} : { channels: Array.from(channelOf) }),
      };
      perNode.set(node, entry);
    }
  }
  const kernelSizes = [...new Set(options.kernelSizes ?? [])].sort((a, b) => a - b);
  const nodes = graph.nodes.map((node): GraphNode => {
    const c = compiled.get(node.name)!;
    const nodeSpaces = perNode.get(node.name);
    const hasTensors = c.params.length + c.state.length > 0;
    const kernel = kernelSizes.length > 1 ? elasticKernel(c, kernelSizes) : null;
    const needsWrap = nodeSpaces !== undefined && (hasTensors || c.def.resize !== undefined);
    if (!needsWrap && kernel === null) return node;
    runtime.op(NESTED_OP, node.name);
    const attrs: NestedAttrs = {
      op: node.op,
      attrs: node.attrs,
      spaces: (nodeSpaces ?? {}) as NestedAttrs['spaces'],
      kernel,
      stateVariants: [],
    };
    return { name: node.name, op: NESTED_OP, inputs: [...node.inputs], outputs: [...node.outputs], attrs };
  });
  return { ...graph, nodes };
}

/** A residual block found in a graph: the `Add` that ends it, its skip input and its branch. */
interface ResidualBlock {
  /** Index of the `Add` node. */
  index: number;
  skip: string;
  branch: string;
}

/**
 * The residual blocks of a graph: `Add` nodes of two inputs where one (the skip) precedes every
 * node of the other's branch and the branch's nodes feed nothing but the branch and the `Add`.
 */
function residualBlocks(graph: Graph): ResidualBlock[] {
  const producer = new Map<string, number>();
  const readers = new Map<string, number[]>();
  graph.nodes.forEach((node, i) => {
    for (const o of node.outputs) producer.set(o, i);
    for (const v of node.inputs) readers.set(v, [...(readers.get(v) ?? []), i]);
  });
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const branchOf = (skip: string, branch: string, add: number): Set<number> | undefined => {
    const start = producer.get(branch);
    const skipAt = producer.get(skip) ?? -1;
    if (start === undefined || branch === skip) return undefined;
    const members = new Set<number>();
    const queue = [start];
    while (queue.length > 0) {
      const i = queue.pop()!;
      if (members.has(i)) continue;
      if (i <= skipAt) return undefined;
      members.add(i);
      for (const v of graph.nodes[i]!.inputs) {
        if (v === skip) continue;
        const p = producer.get(v);
        if (p === undefined) return undefined;
        queue.push(p);
      }
    }
    // The branch must reach the skip input and feed nothing outside itself.
    const reachesSkip = [...members].some((i) => graph.nodes[i]!.inputs.includes(skip));
    if (!reachesSkip) return undefined;
    for (const i of members) {
      for (const o of graph.nodes[i]!.outputs) {
        if (outputs.has(o)) return undefined;
        if ((readers.get(o) ?? []).some((r) => r !== add && !members.has(r))) return undefined;
      }
    }
    return members;
  };
  const blocks: ResidualBlock[] = [];
  graph.nodes.forEach((node, index) => {
    if (node.op !== 'core.Add' || node.inputs.length !== 2) return;
    const [a, b] = node.inputs as [string, string];
    if (branchOf(a, b, index) !== undefined) blocks.push({ index, skip: a, branch: b });
    else if (branchOf(b, a, index) !== undefined) blocks.push({ index, skip: b, branch: a });
  });
  return blocks;
}

/** Replaces residual `Add`s by depth-nested `sorted-net.Residual`s; a stage is a run of blocks of one shape. */
function nestDepth(graph: Graph, shapes: ReadonlyMap<string, string>): Graph {
  const blocks = residualBlocks(graph);
  const nodes = [...graph.nodes];
  let stage = -1;
  let block = 0;
  let lastShape: string | undefined;
  for (const b of blocks) {
    const shape = shapes.get(b.skip);
    if (shape !== lastShape) {
      stage += 1;
      block = 0;
      lastShape = shape;
    }
    block += 1;
    const add = nodes[b.index]!;
    nodes[b.index] = {
      name: add.name,
      op: RESIDUAL_OP,
      inputs: [b.skip, b.branch],
      outputs: [...add.outputs],
      attrs: { stage, block },
    };
  }
  return { ...graph, nodes };
}

/** `weights` with `replacement`'s tensors in place; tensors this pass made and replaced are freed. */
function mergeWeights(
  weights: Map<string, tf.Tensor>,
  replacement: ReadonlyMap<string, tf.Tensor> | undefined,
  made: Set<tf.Tensor>,
): void {
  for (const [name, t] of replacement ?? []) {
    const old = weights.get(name);
    if (old !== undefined && made.has(old)) {
      old.dispose();
      made.delete(old);
    }
    weights.set(name, t);
    made.add(t);
  }
}

/**
 * Turns a graph into a nested one: its changeable channel groups (`channelGroups`: residual adds,
 * depthwise convolutions and attention heads couple channels, and coupled channels move
 * together) become width knobs, reordered first when `orders` are given so that every prefix is
 * the best of its size; the layers on them become `sorted-net.Nested` nodes that run on a prefix
 * chosen per call; convolutions become elastic when `kernelSizes` are given; residual blocks
 * become depth-nested (`sorted-net.Residual`). A group some node cannot narrow at run time (a
 * `Flatten` of its channels, a sub-graph) stays at full width. Parameters keep their names and
 * shapes: the full sub-network computes what the graph computed.
 */
export function nest(graph: Graph, options: NestOptions, context: PassContext): PassResult {
  const { runtime } = context;
  const opts = options ?? {};
  const analysis = channelGroups(runtime, graph);
  const topLevel = new Set(graph.nodes.map((n) => n.name));
  const wanted = opts.groups === undefined ? undefined : new Set(opts.groups);
  for (const id of wanted ?? []) {
    if (analysis.groups[id] === undefined) {
      throw new DynnError(
        'INVALID_OPTION',
        `sorted-net.nest: there is no channel group ${id}; the graph has ${analysis.groups.length} (see dynn inspect).`,
      );
    }
  }
  const weights = new Map(context.weights);
  const made = new Set<tf.Tensor>();
  try {
    // Reordering keeps the graph as it is: the groups found above stay valid.
    for (const [id, order] of Object.entries(opts.orders ?? {})) {
      const result = reorderChannels(graph, { group: Number(id), order }, { runtime, weights });
      mergeWeights(weights, result.weights, made);
    }
    const candidates = analysis.groups.filter(
      (g) =>
        g.fixed.length === 0 &&
        g.size > 1 &&
        (wanted === undefined || wanted.has(g.id)) &&
        g.nodes.every((n) => topLevel.has(n)),
    );
    const compiled = compileGraph(runtime, graph);
    const byName = new Map(compiled.nodes.map((c) => [c.node.name, c]));
    const shapes = new Map([...compiled.values].map(([name, v]) => [name, JSON.stringify(v.shape)]));
    const nested = new Set(candidates.map((g) => g.id));
    for (;;) {
      let candidate = wrapNodes(runtime, graph, byName, analysis.groups, nested, opts);
      if (opts.depth !== false) candidate = nestDepth(candidate, shapes);
      candidate = {
        ...candidate,
        opsets: { ...candidate.opsets, [SORTED_NET_PLUGIN.domain]: SORTED_NET_PLUGIN.opset },
      };
      try {
        compileGraph(runtime, candidate);
        const sorted = new Map([...weights].filter(([, t]) => made.has(t)));
        made.clear();
        return { graph: candidate, weights: sorted };
      } catch (error) {
        // A node that cannot take a narrower input at run time: its groups stay at full width.
        const node = isDynnError(error) ? error.context.node : undefined;
        const blocking = [...nested].filter(
          (id) => node !== undefined && analysis.groups[id]!.nodes.includes(node),
        );
        if (blocking.length === 0) throw error;
        for (const id of blocking) nested.delete(id);
      }
    }
  } finally {
    tf.dispose([...made]);
  }
}

/** The pass `sorted-net.nest` ({@link nest}). */
export const nestPass = definePass<NestOptions>({
  name: 'sorted-net.nest',
  description:
    'Turns a graph into a nested network: width knobs from its channel groups (optionally sorted by importance), elastic kernels, depth-nested residual blocks.',
  run: nest,
});
