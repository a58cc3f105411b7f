import {
  DynnError,
  definePass,
  type Graph,
  type Model,
  type PassContext,
  resolveAttrs,
  tensorOwners,
} from '@dynn/core';
import { EARLY_EXIT_PLUGIN, EXIT_OP, EXIT_OUTPUT, type ExitAttrs, exitOp } from './exit.js';
import { requireExitOp } from './insert-exits.js';

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

/**
 * A `trainable` filter for `fit` that trains only the exits' parameters: retrofit mode
 * (EE-Tuning), where a trained backbone stays frozen and only the exit heads learn. A parameter
 * belongs to the exits when an exit node declares it (read from the ops' declarations with
 * `tensorOwners`, not from its name). Shared heads count as exit parameters, so a head (and
 * norm) the exits share with the network's own output trains too. Takes a model, or any
 * `{ runtime, graph }` whose runtime compiles the graph.
 *
 * @example
 * ```ts
 * await fit(model, data, { loss: multiExitObjective(), trainable: exitParamFilter(model) });
 * ```
 */
export function exitParamFilter(model: Pick<Model, 'runtime' | 'graph'>): (paramName: string) => boolean {
  const owners = tensorOwners(model.runtime, model.graph);
  const names = new Set(
    model.graph.params.map((t) => t.name).filter((name) => owners.get(name)?.some((o) => o.op === EXIT_OP)),
  );
  return (paramName) => names.has(paramName);
}

/**
 * The pass `early-exit.remove-exits`, the inverse of `early-exit.insert-exits`: each exit's
 * features go straight to its readers again, and the exits' outputs and op set are dropped, with
 * the parameters and state only exits declare (read with `tensorOwners`). Tensors the exits share
 * with a node that stays (the output head they share) stay. It takes no option and makes no
 * weight: the result with the multi-exit model's weights is the static network, the baseline a
 * dynamic run is measured against (see `staticModel`).
 *
 * @example
 * ```ts
 * const { graph, weights } = runPass(model.runtime, 'early-exit.remove-exits', model, {});
 * const backbone = createModel(model.runtime, graph, { weights });
 * ```
 */
export function removeExits(graph: Graph, _options: Record<string, never>, context: PassContext): Graph {
  requireExitOp(context.runtime, 'early-exit.remove-exits');
  const owners = tensorOwners(context.runtime, graph);
  const exitOnly = (name: string) => owners.get(name)?.every((o) => o.op === EXIT_OP) ?? false;
  const exits = graph.nodes.filter((node) => node.op === EXIT_OP);
  // Each exit's features value takes back the name the exit passed it on under.
  const renamed = new Map(exits.map((node) => [node.inputs[0]!, node.outputs[EXIT_OUTPUT.features]!]));
  const exitValues = new Set(exits.flatMap((node) => node.outputs.slice(EXIT_OUTPUT.logits)));
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
    params: graph.params.filter((t) => !exitOnly(t.name)).map((t) => ({ ...t })),
    state: graph.state.filter((t) => !exitOnly(t.name)).map((t) => ({ ...t })),
  };
}

/** The pass `early-exit.remove-exits` ({@link removeExits}), provided by `earlyExit()`. */
export const removeExitsPass = definePass<Record<string, never>>({
  name: 'early-exit.remove-exits',
  description: 'Removes the early exits of a graph, with the tensors only they declare.',
  run: removeExits,
});
