import { DynnError, type DynnErrorContext } from './errors.js';
import type { Attrs, Graph, GraphNode, SubGraph, TensorInfo, ValueInfo } from './ir.js';
import { type InferContext, type OpDef, type OutputInfo, type ParamSpec, resolveAttrs } from './op.js';
import { formatShape } from './ops/basic/shape-helpers.js';
import type { Runtime } from './runtime.js';
import { type NodeSubGraph, subGraphsOf } from './sub-graph.js';

/** One tensor a node uses: its local name in the op and its declaration in the graph. */
export interface NodeTensor {
  /** The name the op uses (`kernel`); for a sub-graph's tensor, its path below the node. */
  local: string;
  /** The graph's declaration (`dense1/kernel`, or the shared name). */
  info: TensorInfo;
  /** The state variant it holds (`<node>/<local>@<variant>`); absent for the default tensor. */
  variant?: string;
}

/** A sub-graph of a compiled node, compiled in the node's scope. */
export interface CompiledSubGraph extends NodeSubGraph {
  /** The compiled sub-graph. */
  compiled: CompiledGraph;
}

/** A node with everything the interpreter needs, computed once. */
export interface CompiledNode {
  /** The node as the graph holds it. */
  node: GraphNode;
  /** Its full name: `moe1/experts/3/fc1` inside sub-graphs, its own name at the top. */
  path: string;
  /** Its op. */
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  def: OpDef<any>;
  /** Its attributes, defaults filled in. */
  attrs: Attrs;
  /** Its input values' infos. */
  inputs: ValueInfo[];
  /** Its output values' infos. */
  outputs: ValueInfo[];
  /** Its own parameters (not its sub-graphs'). */
  params: NodeTensor[];
  /** Its own state tensors. */
  state: NodeTensor[];
  /** Its sub-graphs, compiled. */
  subGraphs: CompiledSubGraph[];
}

/** A graph or sub-graph compiled against a runtime: shapes inferred, tensors named. */
export interface CompiledGraph {
  /** Prefix of its nodes' full names: `''` at the top, `moe1/experts/3/` inside a sub-graph. */
  prefix: string;
  /** The graph. */
  graph: SubGraph;
  /** Inferred dtype and shape of every value. */
  values: Map<string, ValueInfo>;
  /** Its nodes, in order. */
  nodes: CompiledNode[];
}

function namedTensors(path: string, specs: ParamSpec[] | undefined): NodeTensor[] {
  return (specs ?? []).flatMap((spec) => {
    const name = spec.shared ?? `${path}/${spec.name}`;
    const info = (tensorName: string): TensorInfo => ({
      name: tensorName,
      dtype: spec.dtype ?? 'float32',
      shape: spec.shape,
      init: spec.init,
    });
    return [
      { local: spec.name, info: info(name) },
      ...(spec.variants ?? []).map((variant) => ({
        local: spec.name,
        info: info(`${name}@${variant}`),
        variant,
      })),
    ];
  });
}

/**
 * Checks that each declared output of a graph (or sub-graph) is computed, with its declared dtype
 * and shape. `label` names an output in messages; `context` names the graph's node or file.
 */
export function checkDeclaredOutputs(
  declared: readonly ValueInfo[],
  values: ReadonlyMap<string, ValueInfo>,
  label: (name: string) => string,
  context: DynnErrorContext,
): void {
  for (const output of declared) {
    const inferred = values.get(output.name);
    if (inferred === undefined) {
      throw new DynnError('INVALID_GRAPH', `${label(output.name)} is not produced by any node.`, context);
    }
    const same =
      inferred.dtype === output.dtype &&
      inferred.shape.length === output.shape.length &&
      inferred.shape.every((d, i) => d === output.shape[i]);
    if (!same) {
      throw new DynnError(
        'SHAPE_MISMATCH',
        `${label(output.name)} is declared ${output.dtype}${formatShape(output.shape)} but computes ` +
          `${inferred.dtype}${formatShape(inferred.shape)}.`,
        context,
      );
    }
  }
}

/** Sub-graph `attr` of a compiled node (entry `index` of a `graphs` attribute), if it has one. */
export function findSubGraph(c: CompiledNode, attr: string, index?: number): CompiledSubGraph | undefined {
  return c.subGraphs.find((s) => s.attr === attr && s.index === index);
}

/** Compiles a node's sub-graphs in its scope; nodes inside them may not decide. */
function compileSubGraphs(
  runtime: Runtime,
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  def: OpDef<any>,
  attrs: Attrs,
  path: string,
): CompiledSubGraph[] {
  return subGraphsOf(def.attrs, attrs).map((sub) => {
    const compiled = compileGraph(runtime, sub.graph, `${path}/${sub.scope}/`);
    const where = `sub-graph '${path}/${sub.scope}'`;
    const inputNames = new Set<string>();
    for (const input of sub.graph.inputs) {
      if (inputNames.has(input.name)) {
        throw new DynnError('INVALID_GRAPH', `The ${where} has two inputs named '${input.name}'.`, {
          node: path,
          op: def.type,
        });
      }
      inputNames.add(input.name);
    }
    checkDeclaredOutputs(sub.graph.outputs, compiled.values, (name) => `Output '${name}' of the ${where}`, {
      node: path,
      op: def.type,
    });
    for (const inner of compiled.nodes) {
      if (inner.def.decide !== undefined) {
        throw new DynnError(
          'INVALID_GRAPH',
          `Node '${inner.path}' (${inner.def.type}) decides (reads values back), which a sub-graph cannot: ` +
            'its enclosing op runs it synchronously. Move the node to the top graph.',
          { node: inner.path, op: inner.def.type },
        );
      }
    }
    return { ...sub, compiled };
  });
}

/**
 * Compiles one node whose inputs have the given infos: resolves its attributes, compiles its
 * sub-graphs, infers its outputs and names its tensors. Throws a {@link DynnError} naming the node.
 * `probe` accepts any number of declared outputs (the builder names them after inference).
 */
export function compileNode(
  runtime: Runtime,
  node: GraphNode,
  inputs: readonly ValueInfo[],
  prefix = '',
  probe = false,
): CompiledNode {
  const path = `${prefix}${node.name}`;
  const def = runtime.op(node.op, path);
  const attrs = resolveAttrs(def, node.attrs, path);
  const max = def.inputs.max ?? def.inputs.min;
  if (inputs.length < def.inputs.min || inputs.length > max) {
    const expected = max === def.inputs.min ? `${max}` : `${def.inputs.min} to ${max}`;
    throw new DynnError(
      'INVALID_GRAPH',
      `Node '${path}' (${node.op}) has ${inputs.length} inputs; the op takes ${expected}.`,
      { node: path, op: node.op },
    );
  }
  const subGraphs = compileSubGraphs(runtime, def, attrs, path);
  const infer: InferContext = {
    subGraph(attr, index) {
      const sub = subGraphs.find((s) => s.attr === attr && s.index === index);
      if (sub === undefined) {
        throw new Error(`no sub-graph '${attr}'${index === undefined ? '' : ` [${index}]`}`);
      }
      return {
        inputs: sub.graph.inputs,
        outputs: sub.graph.outputs.map((o) => sub.compiled.values.get(o.name)!),
      };
    },
  };
  let outputs: OutputInfo[];
  try {
    outputs = def.inferShape(attrs, inputs, infer);
  } catch (error) {
    if (error instanceof DynnError) throw error;
    const given = inputs.map((v) => `${v.name}: ${v.dtype}${formatShape(v.shape)}`).join(', ');
    throw new DynnError(
      'SHAPE_MISMATCH',
      `Node '${path}' (${node.op}): ${(error as Error).message}. Inputs were ${given}.`,
      { node: path, op: node.op },
    );
  }
  const count = def.outputs === 'variadic' ? outputs.length : (def.outputs ?? 1);
  if (outputs.length !== count || (node.outputs.length !== count && !probe)) {
    throw new DynnError(
      'INVALID_GRAPH',
      `Node '${path}' (${node.op}) declares ${node.outputs.length} outputs; the op produces ${count}.`,
      { node: path, op: node.op },
    );
  }
  return {
    node,
    path,
    def,
    attrs,
    inputs: [...inputs],
    outputs: outputs.map((info, i) => ({
      name: node.outputs[i] ?? `${i}`,
      dtype: info.dtype,
      shape: info.shape,
    })),
    params: namedTensors(path, def.params?.(attrs, inputs)),
    state: namedTensors(path, def.state?.(attrs, inputs)),
    subGraphs,
  };
}

/**
 * Compiles a graph (or a sub-graph, its nodes named below `prefix`) in node order: every value
 * defined once before use, every node compiled. Throws a `SHAPE_MISMATCH` or `INVALID_GRAPH`
 * {@link DynnError} naming the node at fault (its full path inside sub-graphs).
 */
export function compileGraph(runtime: Runtime, graph: SubGraph, prefix = ''): CompiledGraph {
  const values = new Map<string, ValueInfo>();
  for (const input of graph.inputs) values.set(input.name, input);
  const names = new Set<string>();
  const nodes = graph.nodes.map((node) => {
    const path = `${prefix}${node.name}`;
    if (names.has(node.name)) {
      throw new DynnError('INVALID_GRAPH', `Two nodes are named '${path}'. Node names must be unique.`, {
        node: path,
      });
    }
    names.add(node.name);
    const inputs = node.inputs.map((name) => {
      const info = values.get(name);
      if (info === undefined) {
        throw new DynnError(
          'INVALID_GRAPH',
          `Node '${path}' (${node.op}) reads value '${name}', which no earlier node or graph input defines.`,
          { node: path, op: node.op },
        );
      }
      return info;
    });
    const compiled = compileNode(runtime, node, inputs, prefix);
    for (const output of compiled.outputs) {
      if (values.has(output.name)) {
        throw new DynnError(
          'INVALID_GRAPH',
          `Node '${path}' writes value '${output.name}', which is already defined. Value names must be unique.`,
          { node: path, op: node.op },
        );
      }
      values.set(output.name, output);
    }
    return compiled;
  });
  return { prefix, graph, values, nodes };
}

/** Every parameter and state tensor a compiled node declares, its sub-graphs' included. */
export function declaredTensors(node: CompiledNode): { params: NodeTensor[]; state: NodeTensor[] } {
  const params = [...node.params];
  const state = [...node.state];
  for (const sub of node.subGraphs) {
    for (const inner of sub.compiled.nodes) {
      const below = declaredTensors(inner);
      const relative = (t: NodeTensor) => ({
        ...t,
        local: `${inner.path.slice(node.path.length + 1)}/${t.local}`,
      });
      params.push(...below.params.map(relative));
      state.push(...below.state.map(relative));
    }
  }
  return { params, state };
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
  return compileNode(runtime, node, inputs).outputs;
}

/**
 * Infers the dtype and shape of every value of a graph, in node order (sub-graphs checked too).
 * Throws a `SHAPE_MISMATCH` or `INVALID_GRAPH` {@link DynnError} naming the node at fault.
 */
export function inferShapes(runtime: Runtime, graph: Graph): Map<string, ValueInfo> {
  return compileGraph(runtime, graph).values;
}

/**
 * The parameters and state tensors a node needs, its sub-graphs' included: named
 * `<node>/<local name>` (`<node>/<attribute>/<sub-node>/<local name>` inside sub-graphs), or by
 * the op's `shared` name when several nodes share one tensor.
 */
export function nodeTensorSpecs(
  runtime: Runtime,
  node: GraphNode,
  inputs: readonly ValueInfo[],
): {
  /** Trainable parameters. */
  params: NodeTensor[];
  /** Non-trainable state. */
  state: NodeTensor[];
} {
  return declaredTensors(compileNode(runtime, node, inputs));
}
