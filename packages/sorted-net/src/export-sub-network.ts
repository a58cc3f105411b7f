import {
  type Attrs,
  channelGroups,
  compileGraph,
  DynnError,
  definePass,
  foldBatchNorm,
  type Graph,
  type GraphNode,
  type PassContext,
  type PassResult,
  type Runtime,
  removeChannels,
  requiredTensors,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { checkSubNetwork, describeNesting } from './describe-nesting.js';
import { SORTED_NET_PLUGIN } from './nest.js';
import { NESTED_OP, type NestedAttrs } from './nested-op.js';
import {
  activeChannels,
  depthOf,
  kernelOf,
  readSubNetwork,
  SORTED_NET_OPTIONS,
  type SubNetwork,
  subNetworkKey,
  widthOf,
} from './options.js';
import { RESIDUAL_OP, type ResidualAttrs } from './residual-op.js';

/** A layer space of a width knob to cut once the graph is plain: which of its channels stay. */
interface Cut {
  knob: string;
  node: string;
  space: string;
  /** Per channel of the op space, whether the sub-network keeps it. */
  kept: boolean[];
}

/** Nodes no graph output depends on, removed. */
function withoutDeadNodes(graph: Graph): Graph {
  const needed = new Set(graph.outputs.map((o) => o.name));
  const kept: GraphNode[] = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]!;
    if (!node.outputs.some((o) => needed.has(o))) continue;
    kept.push(node);
    for (const v of node.inputs) needed.add(v);
  }
  return { ...graph, nodes: kept.reverse() };
}

/**
 * The sub-network `sub` of a nested graph as a plain graph of the wrapped ops: each nested layer
 * back to its own op (an elastic kernel cropped to the chosen size), each residual block the
 * sub-network keeps an `Add`, each it skips gone with its branch, and the batch-norm statistics
 * recalibrated for `sub` (its state variant) as the default ones. Channels stay at full size.
 */
function unnest(
  runtime: Runtime,
  graph: Graph,
  sub: SubNetwork,
  weights: ReadonlyMap<string, tf.Tensor>,
  made: Map<string, tf.Tensor>,
): { graph: Graph; cuts: Map<string, Cut[]> } {
  const key = subNetworkKey(sub);
  const renamed = new Map<string, string>();
  const cuts = new Map<string, Cut[]>();
  const nodes: GraphNode[] = [];
  const name = (v: string) => renamed.get(v) ?? v;
  for (const node of graph.nodes) {
    const inputs = node.inputs.map(name);
    if (node.op === RESIDUAL_OP) {
      const attrs = node.attrs as ResidualAttrs;
      if (depthOf(sub, attrs.stage) < attrs.block) renamed.set(node.outputs[0]!, inputs[0]!);
      else nodes.push({ name: node.name, op: 'core.Add', inputs, outputs: [...node.outputs], attrs: {} });
      continue;
    }
    if (node.op !== NESTED_OP) {
      nodes.push({ ...node, inputs });
      continue;
    }
    const attrs = node.attrs as NestedAttrs;
    let inner: Attrs = { ...attrs.attrs };
    for (const [space, s] of Object.entries(attrs.spaces)) {
      const keep = activeChannels(s.size, widthOf(sub, s.knob), s.multiple);
      if (keep === s.size) continue;
      const kept = (s.channels ?? Array.from({ length: s.size }, (_, c) => c)).map((g) => g < keep);
      cuts.set(s.knob, [...(cuts.get(s.knob) ?? []), { knob: s.knob, node: node.name, space, kept }]);
    }
    const kernel = attrs.kernel === null ? undefined : kernelOf(sub, attrs.kernel.key);
    if (attrs.kernel !== null && kernel !== undefined && kernel !== attrs.kernel.sizes.at(-1)) {
      if (!attrs.kernel.sizes.includes(kernel)) {
        throw new DynnError(
          'INVALID_OPTION',
          `sorted-net.export: kernel ${kernel} for node '${node.name}', whose elastic kernel takes ${attrs.kernel.sizes.join(', ')}.`,
          { node: node.name },
        );
      }
      inner = { ...inner, kernelSize: [kernel, kernel] };
      const param = `${node.name}/${attrs.kernel.param}`;
      const full = weights.get(param);
      if (full === undefined) throw missingWeight(param);
      const start = (full.shape[0]! - kernel) / 2;
      made.set(
        param,
        tf.slice(
          full,
          [start, start, ...full.shape.slice(2).map(() => 0)],
          [kernel, kernel, ...full.shape.slice(2)],
        ),
      );
    }
    // The statistics recalibrated for this sub-network become the plain node's own.
    if (attrs.stateVariants.includes(key)) {
      for (const [tensorName, t] of weights) {
        const suffix = `@${key}`;
        if (tensorName.startsWith(`${node.name}/`) && tensorName.endsWith(suffix))
          made.set(tensorName.slice(0, -suffix.length), tf.clone(t));
      }
    }
    if (Array.isArray(inner.stateVariants)) inner = { ...inner, stateVariants: [] };
    nodes.push({ name: node.name, op: attrs.op, inputs, outputs: [...node.outputs], attrs: inner });
  }
  const outputs = graph.outputs.map((o) => {
    const source = renamed.get(o.name);
    if (source !== undefined)
      nodes.push({
        name: `${o.name}/identity`,
        op: 'core.Identity',
        inputs: [source],
        outputs: [o.name],
        attrs: {},
      });
    return o;
  });
  const opsets = { ...graph.opsets };
  delete opsets[SORTED_NET_PLUGIN.domain];
  const plain = withoutDeadNodes({ ...graph, opsets, outputs, nodes });
  const tensors = requiredTensors(compileGraph(runtime, plain));
  return { graph: { ...plain, ...tensors }, cuts };
}

function missingWeight(name: string): DynnError {
  return new DynnError(
    'INVALID_OPTION',
    `sorted-net.export needs weight '${name}', which it was not given: run it on a model (runPass / exportSubNetwork).`,
  );
}

/** Options of `sorted-net.export`: the sub-network, and whether to fold its batch norms. */
export interface ExportOptions extends SubNetwork {
  /**
   * Fold each batch norm (and the activation after it) into the layer before it, as inference
   * converters do (default true): fewer, fused kernels. The file serves; to train it further,
   * export with `false`.
   */
  foldBatchNorm?: boolean;
}

/**
 * A chosen sub-network of a nested graph as a standalone, physically smaller graph of plain ops
 * that `@dynn/core` runs without this plugin: skipped residual blocks gone, elastic kernels
 * cropped, and each width knob's dropped channels removed with `core.remove-channels` (so every
 * coupled layer shrinks together); batch-norm statistics recalibrated for the sub-network become
 * the default ones. It computes what the nested model computes with these run options.
 */
export function exportSubNetwork(graph: Graph, options: ExportOptions, context: PassContext): PassResult {
  const { foldBatchNorm: fold = true, ...chosen } = options ?? {};
  const sub = readSubNetwork({ [SORTED_NET_OPTIONS]: chosen });
  checkSubNetwork(describeNesting(graph), sub);
  const { runtime } = context;
  const made = new Map<string, tf.Tensor>();
  const weights = new Map(context.weights);
  try {
    const plain = unnest(runtime, graph, sub, context.weights, made);
    for (const [n, t] of made) weights.set(n, t);
    let current: Graph = plain.graph;
    // A pass's new tensors replace the ones this export made before them.
    const adopt = (result: PassResult): Graph => {
      for (const [n, t] of result.weights ?? []) {
        const old = made.get(n);
        if (old !== undefined && old !== t) old.dispose();
        made.set(n, t);
        weights.set(n, t);
      }
      return result.graph;
    };
    for (const layers of plain.cuts.values()) {
      const analysis = channelGroups(runtime, current);
      // Any layer of the knob still in the graph says which channels go (skipped blocks took some).
      let found: { group: number; channels: number[] } | undefined;
      for (const cut of layers) {
        const group = analysis.groups.find((g) =>
          g.spaces.some((s) => s.node === cut.node && s.space === cut.space),
        );
        const space = group?.spaces.find((s) => s.node === cut.node && s.space === cut.space);
        if (group === undefined || space === undefined) continue;
        const gone = Array.from(space.channelOf).filter((_, c) => cut.kept[c] === false);
        found = { group: group.id, channels: [...new Set(gone)] };
        break;
      }
      if (found === undefined) continue;
      const { group, channels } = found;
      const result = removeChannels(current, { group, channels }, { runtime, weights });
      current = adopt(result);
    }
    if (fold) {
      current = adopt(foldBatchNorm(current, {}, { runtime, weights }));
    }
    const kept = new Map<string, tf.Tensor>();
    for (const t of [...current.params, ...current.state]) {
      const own = made.get(t.name);
      if (own !== undefined) kept.set(t.name, own);
    }
    for (const [n, t] of made) if (kept.get(n) !== t) t.dispose();
    made.clear();
    return { graph: current, weights: kept };
  } finally {
    tf.dispose([...made.values()]);
  }
}

/** The pass `sorted-net.export` ({@link exportSubNetwork}). */
export const exportPass = definePass<ExportOptions>({
  name: 'sorted-net.export',
  description:
    'Exports one sub-network of a nested graph as a standalone, physically smaller graph of plain ops.',
  run: exportSubNetwork,
});
