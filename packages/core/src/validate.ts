import { type CompiledGraph, checkDeclaredOutputs, compileGraph, declaredTensors } from './compile.js';
import { DynnError } from './errors.js';
import type { Graph, TensorInfo, ValueInfo } from './ir.js';
import type { Runtime } from './runtime.js';
import { ownersOf } from './tensor-owners.js';

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
  ownerOf: (name: string) => string | undefined,
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
        { ...where, ...(ownerOf(spec.name) === undefined ? {} : { node: ownerOf(spec.name) }) },
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
 * parameters and state are exactly what the nodes need. Sub-graphs are checked the same way, an
 * error naming the full path of the bad node (`moe1/experts/3/fc1`). Returns the inferred value
 * infos.
 */
export function validateGraph(runtime: Runtime, graph: Graph, file?: string): Map<string, ValueInfo> {
  return checkGraph(runtime, graph, file).values;
}

/** @internal {@link validateGraph}, returning the compiled graph the interpreter runs. */
export function checkGraph(runtime: Runtime, graph: Graph, file?: string): CompiledGraph {
  const where = file ? { file } : {};
  runtime.checkSupports(graph, file);
  if (graph.outputs.length === 0) throw new DynnError('INVALID_GRAPH', 'The graph has no outputs.', where);
  let compiled: CompiledGraph;
  try {
    compiled = compileGraph(runtime, graph);
  } catch (error) {
    if (error instanceof DynnError && file) {
      throw new DynnError(error.code, `${file}: ${error.message}`, { ...error.context, file });
    }
    throw error;
  }
  checkDeclaredOutputs(graph.outputs, compiled.values, (name) => `Graph output '${name}'`, where);
  const params: TensorInfo[] = [];
  const state: TensorInfo[] = [];
  for (const node of compiled.nodes) {
    const specs = declaredTensors(node);
    for (const t of specs.params) addTensor(params, t.info);
    for (const t of specs.state) addTensor(state, t.info);
  }
  const owners = ownersOf(compiled);
  const ownerOf = (name: string) => owners.get(name)?.[0]?.node;
  checkTensors('params', graph.params, params, ownerOf, file);
  checkTensors('state', graph.state, state, ownerOf, file);
  return compiled;
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
