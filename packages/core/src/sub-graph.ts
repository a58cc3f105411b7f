import type { Attrs, AttrValue, SubGraph } from './ir.js';
import type { AttrSchema } from './op.js';

/** One sub-graph a node holds: the attribute it sits in and the scope its nodes are named in. */
export interface NodeSubGraph {
  /** The attribute (`body`, `experts`). */
  attr: string;
  /** Position in a `graphs` attribute; undefined for a `graph` attribute. */
  index?: number;
  /** The scope below the node: `body`, or `experts/3` for the fourth graph of a list. */
  scope: string;
  /** The graph. */
  graph: SubGraph;
}

/**
 * The sub-graphs of a node, in attribute order: one per `graph` attribute, one per entry of a
 * `graphs` attribute. Attributes must be resolved (checked) first.
 */
export function subGraphsOf(schema: AttrSchema, attrs: Attrs): NodeSubGraph[] {
  const found: NodeSubGraph[] = [];
  for (const [attr, spec] of Object.entries(schema)) {
    const value = attrs[attr];
    if (spec.kind === 'graph' && value !== null && value !== undefined) {
      found.push({ attr, scope: attr, graph: value as SubGraph });
    } else if (spec.kind === 'graphs' && Array.isArray(value)) {
      (value as SubGraph[]).forEach((graph, index) => {
        found.push({ attr, index, scope: `${attr}/${index}`, graph });
      });
    }
  }
  return found;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);
const isNameList = (v: unknown) => Array.isArray(v) && v.every((n) => typeof n === 'string' && n.length > 0);

function valueInfoProblem(v: unknown, where: string): string | undefined {
  if (!isObject(v) || typeof v.name !== 'string' || v.name.length === 0) return `${where} must have a name`;
  if (v.dtype !== 'float32' && v.dtype !== 'int32' && v.dtype !== 'bool') {
    return `${where} ('${v.name}') has dtype ${JSON.stringify(v.dtype)}; expected float32, int32 or bool`;
  }
  const shapeOk =
    Array.isArray(v.shape) &&
    v.shape.every(
      (d) =>
        (typeof d === 'number' && Number.isSafeInteger(d) && d >= 0) ||
        (typeof d === 'string' && d.length > 0),
    );
  return shapeOk ? undefined : `${where} ('${v.name}') must have a shape of sizes and symbolic names`;
}

/**
 * What is structurally wrong with a value given as a sub-graph (`{ inputs, outputs, nodes }`), or
 * undefined. Runs before anything reads its fields, so a hostile file cannot crash validation;
 * ops, shapes and tensors are checked afterwards, as for the top graph.
 */
export function subGraphProblem(attr: AttrValue, where: string): string | undefined {
  const value: unknown = attr;
  if (!isObject(value)) return `${where} must be a graph { inputs, outputs, nodes }`;
  for (const key of ['inputs', 'outputs', 'nodes'] as const) {
    if (!Array.isArray(value[key])) return `${where} must be a graph: its '${key}' must be an array`;
  }
  for (const key of ['params', 'state'] as const) {
    const declared = value[key];
    if (declared !== undefined && !(Array.isArray(declared) && declared.length === 0)) {
      return `${where} declares ${key}; a sub-graph's ${key} are declared by the top graph, named <node>/<attribute>/<sub-node>/<name>`;
    }
  }
  const graph = value as unknown as SubGraph;
  for (const [list, label] of [
    [graph.inputs, 'input'],
    [graph.outputs, 'output'],
  ] as const) {
    for (const [i, v] of (list as unknown[]).entries()) {
      const problem = valueInfoProblem(v, `${where} ${label} ${i}`);
      if (problem) return problem;
    }
  }
  if (graph.outputs.length === 0) return `${where} has no outputs`;
  for (const [i, n] of (graph.nodes as unknown[]).entries()) {
    const ok =
      isObject(n) &&
      typeof n.name === 'string' &&
      n.name.length > 0 &&
      !n.name.includes('/') &&
      typeof n.op === 'string' &&
      isNameList(n.inputs) &&
      isNameList(n.outputs) &&
      isObject(n.attrs);
    if (!ok) {
      return `${where} node ${i} must be { name (without '/'), op, inputs, outputs, attrs }`;
    }
  }
  return undefined;
}
