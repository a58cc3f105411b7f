import { type CompiledGraph, compileGraph } from './compile.js';
import { DynnError } from './errors.js';
import { type Graph, splitOpType, type ValueInfo } from './ir.js';
import { definePass, type PassContext, type PassResult } from './plugin.js';
import { requiredTensors } from './tensor-owners.js';

/** Options of the pass `core.extract`. */
export interface ExtractOptions {
  /** The values the sub-network returns (graph outputs or any value the graph computes). */
  outputs: readonly string[];
}

function opDomains(compiled: CompiledGraph, into: Set<string>): Set<string> {
  for (const c of compiled.nodes) {
    into.add(splitOpType(c.node.op).domain);
    for (const sub of c.subGraphs) opDomains(sub.compiled, into);
  }
  return into;
}

/**
 * The sub-network that computes `outputs`: only the nodes, inputs, parameters and state they
 * need, and only the op sets those nodes use (a sub-network of core ops loads in plain
 * `@dynn/core`). With its weights (`runPass` / `applyPass`) it is a standalone model.
 */
export function extractSubNetwork(graph: Graph, options: ExtractOptions, context: PassContext): PassResult {
  const compiled = compileGraph(context.runtime, graph);
  const outputs = options?.outputs;
  if (!Array.isArray(outputs) || outputs.length === 0) {
    throw new DynnError('INVALID_OPTION', "core.extract needs 'outputs': the names of the values to keep.");
  }
  const infos: ValueInfo[] = outputs.map((name) => {
    const info = graph.outputs.find((o) => o.name === name) ?? compiled.values.get(name);
    if (info === undefined) {
      throw new DynnError(
        'INVALID_OPTION',
        `core.extract: the graph computes no value '${name}'. Graph outputs: ${graph.outputs.map((o) => o.name).join(', ')}.`,
      );
    }
    return { ...info, name, shape: [...info.shape] };
  });
  const needed = new Set(outputs);
  const kept = new Set<number>();
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]!;
    if (!node.outputs.some((o) => needed.has(o))) continue;
    kept.add(i);
    for (const input of node.inputs) needed.add(input);
  }
  const nodes = graph.nodes.filter((_, i) => kept.has(i));
  const rewritten: Graph = {
    ...graph,
    inputs: graph.inputs.filter((v) => needed.has(v.name)).map((v) => ({ ...v, shape: [...v.shape] })),
    outputs: infos,
    nodes,
    params: [],
    state: [],
  };
  const result = compileGraph(context.runtime, rewritten);
  const domains = opDomains(result, new Set());
  const opsets = Object.fromEntries(Object.entries(graph.opsets).filter(([domain]) => domains.has(domain)));
  const tensors = requiredTensors(result);
  return { graph: { ...rewritten, opsets, params: tensors.params, state: tensors.state } };
}

/** The pass `core.extract` ({@link extractSubNetwork}). */
export const extractPass = definePass<ExtractOptions>({
  name: 'core.extract',
  description: 'Keeps only what computes the chosen outputs: a standalone sub-network.',
  run: extractSubNetwork,
});
