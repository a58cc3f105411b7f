import { type CompiledGraph, compileGraph, compileNode } from './compile.js';
import { DynnError } from './errors.js';
import type { Attrs, AttrValue, Graph, GraphNode, SubGraph, ValueInfo } from './ir.js';
import { formatShape, sameDims } from './ops/basic/shape-helpers.js';
import type { Runtime } from './runtime.js';
import { requiredTensors } from './tensor-owners.js';

/** New sizes of value axes: per value name (`scan/body/h` inside a sub-graph), axis to size. */
export type AxisSizes = ReadonlyMap<string, ReadonlyMap<number, number>>;

/** New sizes of op channel spaces: per node path, space name to size. */
export type SpaceSizes = ReadonlyMap<string, ReadonlyMap<string, number>>;

function resized(info: ValueInfo, name: string, sizes: AxisSizes): ValueInfo {
  const axes = sizes.get(name);
  if (axes === undefined) return { ...info, shape: [...info.shape] };
  return { ...info, shape: info.shape.map((d, axis) => axes.get(axis) ?? d) };
}

const sameShape = (a: ValueInfo, b: ValueInfo) => a.dtype === b.dtype && sameDims(a.shape, b.shape);

function resizeScope(
  runtime: Runtime,
  scope: CompiledGraph,
  sizes: AxisSizes,
  spaceSizes: SpaceSizes,
): SubGraph {
  const { prefix } = scope;
  const values = new Map<string, ValueInfo>();
  const inputs = scope.graph.inputs.map((v) => resized(v, `${prefix}${v.name}`, sizes));
  for (const v of inputs) values.set(v.name, v);
  const nodes: GraphNode[] = scope.nodes.map((c) => {
    const newInputs = c.node.inputs.map((name) => values.get(name)!);
    const wanted = c.node.outputs.map((name, i) => resized(c.outputs[i]!, `${prefix}${name}`, sizes));
    const newSpaces = spaceSizes.get(c.path);
    const changed =
      newSpaces !== undefined ||
      newInputs.some((v, i) => !sameShape(v, c.inputs[i]!)) ||
      wanted.some((v, i) => !sameShape(v, c.outputs[i]!));
    let attrs: Attrs = { ...c.attrs };
    for (const sub of c.subGraphs) {
      const rebuilt = resizeScope(runtime, sub.compiled, sizes, spaceSizes);
      if (sub.index === undefined) attrs[sub.attr] = rebuilt as unknown as AttrValue;
      else {
        const list = [...(attrs[sub.attr] as unknown as SubGraph[])];
        list[sub.index] = rebuilt;
        attrs[sub.attr] = list as unknown as AttrValue;
      }
    }
    if (changed && c.def.resize !== undefined) {
      const spaces = { ...(c.def.channels?.(c.attrs, c.inputs, c.outputs).spaces ?? {}) };
      for (const [space, size] of newSpaces ?? []) spaces[space] = size;
      attrs = c.def.resize(attrs, newInputs, wanted, spaces);
    }
    // Keep the node's attributes as written, with the ones that changed.
    const nodeAttrs: Attrs = { ...c.node.attrs };
    for (const [key, value] of Object.entries(attrs)) {
      if (Object.hasOwn(c.node.attrs, key) || JSON.stringify(value) !== JSON.stringify(c.attrs[key])) {
        nodeAttrs[key] = value;
      }
    }
    const node: GraphNode = {
      ...c.node,
      inputs: [...c.node.inputs],
      outputs: [...c.node.outputs],
      attrs: nodeAttrs,
    };
    const outputs = compileNode(runtime, node, newInputs, prefix).outputs;
    outputs.forEach((out, i) => {
      if (!sameShape(out, wanted[i]!)) {
        throw new DynnError(
          'SHAPE_MISMATCH',
          `Node '${c.path}' (${c.def.type}) computes ${formatShape(out.shape)} for output '${c.node.outputs[i]}' ` +
            `after its channels changed, where ${formatShape(wanted[i]!.shape)} is needed: its op's channel ` +
            'declaration and its `resize` disagree. Declare the coupling in the op, or leave this group alone.',
          { node: c.path, op: c.def.type },
        );
      }
      values.set(c.node.outputs[i]!, out);
    });
    return node;
  });
  const outputs = scope.graph.outputs.map((v) => resized(v, `${prefix}${v.name}`, sizes));
  return { inputs, outputs, nodes };
}

/**
 * A graph rewritten for new channel counts: every value axis in `sizes` and op channel space in
 * `spaceSizes` takes its new size, each node whose inputs, outputs or spaces change gets its
 * attributes from its op's `resize` (sub-graphs included), and the declared parameters and state
 * follow the ops. Throws, naming the node, when
 * an op cannot produce the sizes asked of it.
 */
export function resizeGraph(
  runtime: Runtime,
  graph: Graph,
  compiled: CompiledGraph,
  sizes: AxisSizes,
  spaceSizes: SpaceSizes,
): Graph {
  const { inputs, outputs, nodes } = resizeScope(runtime, compiled, sizes, spaceSizes);
  const rewritten: Graph = { ...graph, inputs, outputs, nodes, params: [], state: [] };
  const tensors = requiredTensors(compileGraph(runtime, rewritten));
  return { ...rewritten, params: tensors.params, state: tensors.state };
}
