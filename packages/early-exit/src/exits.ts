import { DynnError, type Graph, type GraphNode, resolveAttrs } from '@dynn/core';
import { EARLY_EXIT_PLUGIN, EXIT_OP, EXIT_OUTPUT, type ExitAttrs, exitOp } from './exit.js';
import { headParams } from './exit-head.js';

/** One exit of a graph, as {@link describeExits} finds it. */
export interface ExitInfo {
  /** The exit's node. */
  node: string;
  /** Its position among the exits (0-based), from its `index` attribute. */
  index: number;
  /** The value holding its logits (a graph output when the exit was inserted by the pass). */
  logits: string;
  /** The value holding its learned halting probability, when it has a halting head. */
  halt?: string;
  /** The graph output it answers for. */
  output: string;
  /** Resolved attributes. */
  attrs: ExitAttrs;
}

/** The exits of a graph, ordered by index. */
export function describeExits(graph: Graph): ExitInfo[] {
  return graph.nodes
    .filter((node) => node.op === EXIT_OP)
    .map((node) => {
      const attrs = resolveAttrs(exitOp, node.attrs, node.name);
      const info: ExitInfo = {
        node: node.name,
        index: attrs.index,
        logits: node.outputs[EXIT_OUTPUT.logits]!,
        output: attrs.output,
        attrs,
      };
      if (attrs.halting) info.halt = node.outputs[EXIT_OUTPUT.halt]!;
      return info;
    })
    .sort((a, b) => a.index - b.index);
}

/**
 * The exits of a graph whose logits (and halting probabilities, where present) are graph outputs,
 * as training and calibration need them. Throws `INVALID_GRAPH` when there are none.
 */
export function exitOutputsOf(graph: Graph): ExitInfo[] {
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const exits = describeExits(graph).filter((e) => outputs.has(e.logits));
  if (exits.length === 0) {
    throw new DynnError(
      'INVALID_GRAPH',
      "The graph has no exit whose logits are a graph output; insert exits with the 'early-exit.insert-exits' pass.",
    );
  }
  return exits;
}

/** Names of the parameters an exit node owns or shares (its head and halting head). */
function exitParamNames(node: GraphNode): string[] {
  const attrs = resolveAttrs(exitOp, node.attrs, node.name);
  // Parameter names depend on the attributes only: any feature size gives the same names.
  return headParams(attrs, { features: 1, layout: 'vector', positions: 1 }).map(
    (spec) => spec.shared ?? `${node.name}/${spec.name}`,
  );
}

/**
 * A `trainable` filter for `fit` that trains only the exits' parameters: retrofit mode
 * (EE-Tuning), where a trained backbone stays frozen and only the exit heads learn. Shared heads
 * count as exit parameters, so a head (and norm) the exits share with the network's own output
 * trains too.
 *
 * @example
 * ```ts
 * await fit(model, data, { loss: multiExitObjective(), trainable: exitParamFilter(model.graph) });
 * ```
 */
export function exitParamFilter(graph: Graph): (paramName: string) => boolean {
  const names = new Set(graph.nodes.filter((node) => node.op === EXIT_OP).flatMap(exitParamNames));
  return (paramName) => names.has(paramName);
}

/**
 * The graph without its exits (the inverse of the insert pass): each exit's features go straight
 * to its readers again, and the exits' outputs, parameters and op set are dropped. Parameters
 * the exits share with a node that stays (`<node>/kernel` of the output head they share) stay. A
 * model of it is the static network (`createModel(runtime, removeExits(graph), { weights })` with
 * the multi-exit model's weights): the baseline a dynamic run is measured against.
 */
export function removeExits(graph: Graph): Graph {
  const exits = graph.nodes.filter((node) => node.op === EXIT_OP);
  // Each exit's features value takes back the name the exit passed it on under.
  const renamed = new Map(exits.map((node) => [node.inputs[0]!, node.outputs[EXIT_OUTPUT.features]!]));
  const exitValues = new Set(exits.flatMap((node) => node.outputs.slice(EXIT_OUTPUT.logits)));
  const staying = new Set(graph.nodes.filter((node) => node.op !== EXIT_OP).map((node) => node.name));
  const isExitParam = exitParamFilter(graph);
  const exitParams = (name: string) =>
    isExitParam(name) && !staying.has(name.slice(0, name.lastIndexOf('/')));
  const rename = (name: string) => renamed.get(name) ?? name;
  const { [EARLY_EXIT_PLUGIN.domain]: _, ...opsets } = graph.opsets;
  return {
    ...graph,
    opsets,
    inputs: graph.inputs.map((v) => ({ ...v, shape: [...v.shape] })),
    outputs: graph.outputs.filter((o) => !exitValues.has(o.name)).map((o) => ({ ...o, shape: [...o.shape] })),
    nodes: graph.nodes
      .filter((node) => node.op !== EXIT_OP)
      .map((node) => ({ ...node, inputs: node.inputs.map(rename), outputs: node.outputs.map(rename) })),
    params: graph.params.filter((t) => !exitParams(t.name)).map((t) => ({ ...t })),
    state: graph.state.map((t) => ({ ...t })),
  };
}
