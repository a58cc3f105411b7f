import { DynnError } from './errors.js';
import type { Dim, Graph, GraphNode, ValueInfo } from './ir.js';
import { type OutputInfo, resolveAttrs } from './op.js';
import type { Runtime } from './runtime.js';

function formatShape(shape: readonly Dim[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Infers one node's output infos from its input infos, wrapping any failure in a
 * `SHAPE_MISMATCH` error that names the node, its op and the shapes it was given.
 */
export function inferNodeOutputs(
  runtime: Runtime,
  node: GraphNode,
  inputs: readonly ValueInfo[],
): ValueInfo[] {
  const def = runtime.op(node.op, node.name);
  const attrs = resolveAttrs(def, node.attrs, node.name);
  const max = def.inputs.max ?? def.inputs.min;
  if (inputs.length < def.inputs.min || inputs.length > max) {
    const expected = max === def.inputs.min ? `${max}` : `${def.inputs.min} to ${max}`;
    throw new DynnError(
      'INVALID_GRAPH',
      `Node '${node.name}' (${node.op}) has ${inputs.length} inputs; the op takes ${expected}.`,
      { node: node.name, op: node.op },
    );
  }
  let outputs: OutputInfo[];
  try {
    outputs = def.inferShape(attrs, inputs);
  } catch (error) {
    if (error instanceof DynnError) throw error;
    const given = inputs.map((v) => `${v.name}: ${v.dtype}${formatShape(v.shape)}`).join(', ');
    throw new DynnError(
      'SHAPE_MISMATCH',
      `Node '${node.name}' (${node.op}): ${(error as Error).message}. Inputs were ${given}.`,
      { node: node.name, op: node.op },
    );
  }
  const count = def.outputs ?? 1;
  if (outputs.length !== count || node.outputs.length !== count) {
    throw new DynnError(
      'INVALID_GRAPH',
      `Node '${node.name}' (${node.op}) declares ${node.outputs.length} outputs; the op produces ${count}.`,
      { node: node.name, op: node.op },
    );
  }
  return outputs.map((info, i) => ({ name: node.outputs[i]!, dtype: info.dtype, shape: info.shape }));
}

/**
 * Infers the dtype and shape of every value of a graph, in node order. Throws a `SHAPE_MISMATCH`
 * or `INVALID_GRAPH` {@link DynnError} naming the node at fault.
 */
export function inferShapes(runtime: Runtime, graph: Graph): Map<string, ValueInfo> {
  const values = new Map<string, ValueInfo>();
  for (const input of graph.inputs) values.set(input.name, input);
  for (const node of graph.nodes) {
    const inputs = node.inputs.map((name) => {
      const info = values.get(name);
      if (info === undefined) {
        throw new DynnError(
          'INVALID_GRAPH',
          `Node '${node.name}' (${node.op}) reads value '${name}', which no earlier node or graph input defines.`,
          { node: node.name, op: node.op },
        );
      }
      return info;
    });
    for (const output of inferNodeOutputs(runtime, node, inputs)) {
      if (values.has(output.name)) {
        throw new DynnError(
          'INVALID_GRAPH',
          `Node '${node.name}' writes value '${output.name}', which is already defined. Value names must be unique.`,
          { node: node.name, op: node.op },
        );
      }
      values.set(output.name, output);
    }
  }
  return values;
}
