import type * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';
import type { Graph } from './ir.js';
import type { OpDef } from './op.js';
import type { Runtime } from './runtime.js';

/** A graph with its weights: what a pass takes and returns, what `createModel` and `saveModel` take. */
export interface WeightedGraph {
  /** The graph. */
  graph: Graph;
  /** Parameter and state tensors by graph name. */
  weights: ReadonlyMap<string, tf.Tensor>;
}

/** What a pass sees besides the graph and its options. */
export interface PassContext {
  /** The runtime the pass runs under: its ops compile the graph, their declarations guide the pass. */
  readonly runtime: Runtime;
  /**
   * The graph's current parameters and state by name (empty when the pass runs on a graph
   * alone). Read-only: the pass neither changes nor disposes them.
   */
  readonly weights: ReadonlyMap<string, tf.Tensor>;
}

/** What a pass returns: the new graph and the weights it made or changed. */
export interface PassResult {
  /** The transformed graph. */
  graph: Graph;
  /**
   * New tensors by name (sliced, reordered, split weights), owned by the caller. A tensor the
   * new graph declares that is not here keeps the input's weight of that name, if there is one;
   * otherwise it is initialised from its spec.
   */
  weights?: ReadonlyMap<string, tf.Tensor>;
}

/**
 * A graph transformation: a pure function of the graph, its weights and the runtime (see
 * `runPass` and `applyPass` in `@dynn/core`).
 */
export interface PassDef<O = Record<string, unknown>> {
  /** Unique name, e.g. `early-exit.insert-exits`. */
  name: string;
  /** One sentence on what the pass does. */
  description: string;
  /**
   * Returns the transformed graph (and any new weights); never mutates `graph` nor the weights.
   * Throws a {@link DynnError} naming the node or option at fault.
   */
  run(graph: Graph, options: O, context: PassContext): Graph | PassResult;
}

/** A bundle of ops and passes from one package. Plain data: creating it changes nothing global. */
export interface Plugin {
  /** The npm package that provides it, named in errors when one of its ops is missing. */
  name: string;
  /** The op domain its ops live in (`core`, `early-exit`...). */
  domain: string;
  /** Op-set version of the domain; graphs record it and refuse to run on an older one. */
  opset: number;
  /** The ops it provides, all in its domain. */
  // biome-ignore lint/suspicious/noExplicitAny: a plugin holds ops with many attribute types.
  ops: readonly OpDef<any>[];
  /** The passes it provides, run with `runtime.pass(name)`. */
  // biome-ignore lint/suspicious/noExplicitAny: a plugin holds passes with many option types.
  passes?: readonly PassDef<any>[];
}

/** Declares a pass. Returns it unchanged (typed). */
export function definePass<O>(def: PassDef<O>): PassDef<O> {
  return def;
}

/**
 * Declares a plugin, checking that every op belongs to its domain and that no op is defined twice.
 */
export function definePlugin(plugin: Plugin): Plugin {
  const seen = new Set<string>();
  for (const op of plugin.ops) {
    if (!op.type.startsWith(`${plugin.domain}.`)) {
      throw new DynnError(
        'INVALID_GRAPH',
        `Plugin ${plugin.name} declares op '${op.type}' outside its domain '${plugin.domain}'.`,
        { op: op.type },
      );
    }
    if (op.version > plugin.opset) {
      throw new DynnError(
        'OP_VERSION',
        `Plugin ${plugin.name}: op '${op.type}' has version ${op.version}, above the plugin's opset ${plugin.opset}.`,
        { op: op.type },
      );
    }
    if (seen.has(op.type)) {
      throw new DynnError('INVALID_GRAPH', `Plugin ${plugin.name} declares op '${op.type}' twice.`, {
        op: op.type,
      });
    }
    seen.add(op.type);
  }
  return plugin;
}

/** The domains of dynn's own plugin packages (`@dynn/<domain>`), published or planned. */
const DYNN_DOMAINS = new Set([
  'early-exit',
  'sorted-net',
  'moe-router',
  'sparse-attention',
  'graph-dynamics',
  'pruning',
]);

/**
 * What to install for a domain's ops, for error messages: dynn's own package for its domains;
 * otherwise the graph records only the domain, so the message says that rather than guess a name.
 */
export function packageForDomain(domain: string): string {
  return DYNN_DOMAINS.has(domain)
    ? `@dynn/${domain}`
    : `the plugin package that provides domain '${domain}' (a model file records the domain, not the package)`;
}
