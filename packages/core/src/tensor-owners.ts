import { type CompiledGraph, type CompiledNode, compileGraph } from './compile.js';
import type { Graph, TensorInfo } from './ir.js';
import type { Runtime } from './runtime.js';

/** A node that declares a parameter or state tensor. */
export interface TensorOwner {
  /** The node's full name (`moe1/experts/3/fc1` inside a sub-graph). */
  node: string;
  /** Its op type. */
  op: string;
  /** The name its op gives the tensor (`kernel`, `movingMean`). */
  local: string;
  /** Whether it is a trainable parameter or state. */
  kind: 'param' | 'state';
  /** The state variant it holds, if it is one. */
  variant?: string;
}

function visit(nodes: readonly CompiledNode[], out: Map<string, TensorOwner[]>): void {
  for (const c of nodes) {
    for (const [kind, list] of [
      ['param', c.params],
      ['state', c.state],
    ] as const) {
      for (const t of list) {
        const owner: TensorOwner = { node: c.path, op: c.def.type, local: t.local, kind };
        if (t.variant !== undefined) owner.variant = t.variant;
        const owners = out.get(t.info.name);
        if (owners === undefined) out.set(t.info.name, [owner]);
        else owners.push(owner);
      }
    }
    for (const sub of c.subGraphs) visit(sub.compiled.nodes, out);
  }
}

/** @internal {@link tensorOwners} of a compiled graph. */
export function ownersOf(compiled: CompiledGraph): Map<string, TensorOwner[]> {
  const out = new Map<string, TensorOwner[]>();
  visit(compiled.nodes, out);
  return out;
}

/**
 * The nodes that declare each parameter and state tensor of a graph, by tensor name, in node
 * order (a shared tensor has several). Read from the ops' declarations, never from the names.
 *
 * @example
 * ```ts
 * const owners = tensorOwners(runtime, graph);
 * owners.get('dense1/kernel'); // [{ node: 'dense1', op: 'core.Dense', local: 'kernel', kind: 'param' }]
 * ```
 */
export function tensorOwners(runtime: Runtime, graph: Graph): Map<string, TensorOwner[]> {
  return ownersOf(compileGraph(runtime, graph));
}

/**
 * The parameters and state a compiled graph's nodes declare, in node order, each once: what the
 * graph's `params` and `state` must list. A pass that adds or removes nodes sets them from it.
 */
export function requiredTensors(compiled: CompiledGraph): {
  /** The parameters, each once, in node order. */
  params: TensorInfo[];
  /** The state tensors, each once, in node order. */
  state: TensorInfo[];
} {
  const params = new Map<string, TensorInfo>();
  const state = new Map<string, TensorInfo>();
  const add = (c: CompiledNode) => {
    for (const t of c.params) if (!params.has(t.info.name)) params.set(t.info.name, t.info);
    for (const t of c.state) if (!state.has(t.info.name)) state.set(t.info.name, t.info);
    for (const sub of c.subGraphs) sub.compiled.nodes.forEach(add);
  };
  compiled.nodes.forEach(add);
  return { params: [...params.values()], state: [...state.values()] };
}
