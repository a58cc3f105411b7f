import { DynnError } from './errors.js';
import type { Graph, GraphNode, TensorInfo, ValueInfo } from './ir.js';
import { type ParamSpec, resolveAttrs } from './op.js';
import type { Runtime } from './runtime.js';
import { inferShapes } from './shape-inference.js';

/** One tensor a node uses: its local name in the op and its declaration in the graph. */
export interface NodeTensor {
  /** The name the op uses (`kernel`). */
  local: string;
  /** The graph's declaration (`dense1/kernel`, or the shared name). */
  info: TensorInfo;
}

/**
 * The parameters and state tensors a node needs: named `<node>/<local name>`, or by the op's
 * `shared` name when several nodes share one tensor.
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
  const def = runtime.op(node.op, node.name);
  const attrs = resolveAttrs(def, node.attrs, node.name);
  const named = (specs: ParamSpec[] | undefined): NodeTensor[] =>
    (specs ?? []).map((spec) => ({
      local: spec.name,
      info: {
        name: spec.shared ?? `${node.name}/${spec.name}`,
        dtype: spec.dtype ?? 'float32',
        shape: spec.shape,
        init: spec.init,
      },
    }));
  return { params: named(def.params?.(attrs, inputs)), state: named(def.state?.(attrs, inputs)) };
}

/**
 * Adds `tensor` to `list` unless a tensor of that name is there already (a shared tensor); a
 * second declaration must agree on dtype and shape.
 */
export function addTensor(list: TensorInfo[], tensor: TensorInfo): void {
  const existing = list.find((t) => t.name === tensor.name);
  if (existing === undefined) {
    list.push(tensor);
    return;
  }
  if (existing.dtype !== tensor.dtype || existing.shape.join(',') !== tensor.shape.join(',')) {
    throw new DynnError(
      'SHAPE_MISMATCH',
      `Shared tensor '${tensor.name}' is used as ${existing.dtype}[${existing.shape}] and as ${tensor.dtype}[${tensor.shape}].`,
    );
  }
}

function checkTensors(
  kind: 'params' | 'state',
  declared: readonly TensorInfo[],
  expected: TensorInfo[],
  file?: string,
) {
  const where = file ? { file } : {};
  const byName = new Map(declared.map((t) => [t.name, t]));
  for (const spec of expected) {
    const found = byName.get(spec.name);
    if (found === undefined) {
      throw new DynnError('INVALID_GRAPH', `The graph's ${kind} lack '${spec.name}' [${spec.shape}].`, where);
    }
    if (found.dtype !== spec.dtype || found.shape.join(',') !== spec.shape.join(',')) {
      throw new DynnError(
        'SHAPE_MISMATCH',
        `${kind === 'params' ? 'Parameter' : 'State'} '${spec.name}' is declared ${found.dtype}[${found.shape}] ` +
          `but its node needs ${spec.dtype}[${spec.shape}].`,
        { ...where, node: spec.name.slice(0, spec.name.lastIndexOf('/')) },
      );
    }
    byName.delete(spec.name);
  }
  const extra = [...byName.keys()];
  if (extra.length > 0) {
    throw new DynnError(
      'INVALID_GRAPH',
      `The graph declares ${kind} no node uses: ${extra.join(', ')}.`,
      where,
    );
  }
}

/**
 * Validates a graph against a runtime: every op is provided at the right op-set version, node
 * and value names are unique, every value is defined before use, attributes match their
 * schemas, shapes infer, graph outputs exist with the declared shapes, and the declared
 * parameters and state are exactly what the nodes need. Returns the inferred value infos.
 */
export function validateGraph(runtime: Runtime, graph: Graph, file?: string): Map<string, ValueInfo> {
  const where = file ? { file } : {};
  runtime.checkSupports(graph, file);
  const nodeNames = new Set<string>();
  for (const node of graph.nodes) {
    if (nodeNames.has(node.name)) {
      throw new DynnError('INVALID_GRAPH', `Two nodes are named '${node.name}'. Node names must be unique.`, {
        ...where,
        node: node.name,
      });
    }
    nodeNames.add(node.name);
  }
  if (graph.outputs.length === 0) throw new DynnError('INVALID_GRAPH', 'The graph has no outputs.', where);
  let values: Map<string, ValueInfo>;
  try {
    values = inferShapes(runtime, graph);
  } catch (error) {
    if (error instanceof DynnError && file) {
      throw new DynnError(error.code, `${file}: ${error.message}`, { ...error.context, file });
    }
    throw error;
  }
  for (const output of graph.outputs) {
    const inferred = values.get(output.name);
    if (inferred === undefined) {
      throw new DynnError(
        'INVALID_GRAPH',
        `Graph output '${output.name}' is not produced by any node.`,
        where,
      );
    }
    const same =
      inferred.dtype === output.dtype &&
      inferred.shape.length === output.shape.length &&
      inferred.shape.every((d, i) => d === output.shape[i]);
    if (!same) {
      throw new DynnError(
        'SHAPE_MISMATCH',
        `Graph output '${output.name}' is declared ${output.dtype}[${output.shape}] but computes ` +
          `${inferred.dtype}[${inferred.shape}].`,
        where,
      );
    }
  }
  const params: TensorInfo[] = [];
  const state: TensorInfo[] = [];
  for (const node of graph.nodes) {
    const specs = nodeTensorSpecs(
      runtime,
      node,
      node.inputs.map((name) => values.get(name)!),
    );
    for (const t of specs.params) addTensor(params, t.info);
    for (const t of specs.state) addTensor(state, t.info);
  }
  checkTensors('params', graph.params, params, file);
  checkTensors('state', graph.state, state, file);
  return values;
}

/** @internal Index of the first NaN or ±Infinity in `values`, or -1. One pass, no allocation. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v - v is 0 for every finite number and NaN for NaN and ±Infinity.
    if (v - v !== 0) return i;
  }
  return -1;
}

/** @internal Where flat element `index` of a tensor of `shape` lies, in words: `row 3 (element [3, 1])`. */
export function elementAt(index: number, shape: readonly number[]): string {
  if (shape.length === 0) return 'its only element';
  if (shape.length === 1) return `row ${index}`;
  const coords = new Array<number>(shape.length);
  let rest = index;
  for (let d = shape.length - 1; d >= 0; d--) {
    coords[d] = rest % shape[d]!;
    rest = Math.floor(rest / shape[d]!);
  }
  return `row ${coords[0]} (element [${coords.join(', ')}])`;
}

/**
 * @internal Throws an `INVALID_INPUT` error naming the first NaN or infinite value of `values`
 * (a tensor of `shape` called `label`), followed by `fix`. Does nothing when all are finite.
 */
export function checkFinite(
  values: ArrayLike<number>,
  shape: readonly number[],
  label: string,
  fix: string,
): void {
  const index = firstNonFinite(values);
  if (index < 0) return;
  throw new DynnError(
    'INVALID_INPUT',
    `${label} contains NaN or infinite values: ${values[index]} at ${elementAt(index, shape)}. ${fix}`,
  );
}
