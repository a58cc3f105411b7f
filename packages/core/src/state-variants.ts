import * as tf from '@tensorflow/tfjs-core';
import { compileGraph } from './compile.js';
import { DynnError } from './errors.js';
import type { Graph } from './ir.js';
import type { RunOptions } from './op.js';
import { definePass, type PassContext, type PassResult } from './plugin.js';
import { requiredTensors } from './tensor-owners.js';
import { checkGraph } from './validate.js';

/** Run options of `@dynn/core` itself, under the key `core` of the run options. */
export interface CoreRunOptions {
  /**
   * The state variant ops read and update in this run (e.g. the batch-norm statistics of one
   * width of a nested network); every op with state variants must declare it.
   */
  stateVariant?: string;
}

/**
 * The state variant a run selects (`options.core.stateVariant`), or undefined for the default
 * state. Ops with state variants return it from their `stateVariant`.
 *
 * @example
 * ```ts
 * await model.run(x, { options: { core: { stateVariant: 'w50' } } });
 * ```
 */
export function selectedStateVariant(options: RunOptions): string | undefined {
  const core = options.core as CoreRunOptions | undefined;
  const variant = core?.stateVariant;
  if (variant !== undefined && (typeof variant !== 'string' || variant === '')) {
    throw new DynnError(
      'INVALID_OPTION',
      `Run option core.stateVariant is ${JSON.stringify(variant)}; give a variant name (a non-empty string).`,
    );
  }
  return variant;
}

/** The attribute of an op that lists its state variants. */
export const STATE_VARIANTS_ATTR = 'stateVariants';

/** Options of the pass `core.add-state-variants`. */
export interface AddStateVariantsOptions {
  /** Names of the variants to add (e.g. one per width: `['w25', 'w50']`). */
  variants: readonly string[];
  /** The nodes to give them (default: every node whose op has a `stateVariants` attribute). */
  nodes?: readonly string[];
}

const VARIANT_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * Adds state variants to nodes whose op declares them (a `stateVariants` attribute and a
 * `stateVariant` selector, as `core.BatchNorm`): each new variant starts as a copy of the node's
 * default state, and is saved with the model. Variants the node has already are kept.
 */
function addStateVariants(graph: Graph, options: AddStateVariantsOptions, context: PassContext): PassResult {
  const { runtime, weights } = context;
  if (!Array.isArray(options.variants) || options.variants.length === 0) {
    throw new DynnError(
      'INVALID_OPTION',
      "core.add-state-variants needs 'variants': a non-empty list of names.",
    );
  }
  for (const v of options.variants) {
    if (typeof v !== 'string' || !VARIANT_NAME.test(v)) {
      throw new DynnError(
        'INVALID_OPTION',
        `State variant name ${JSON.stringify(v)} may hold letters, digits, '_', '.' and '-' only.`,
      );
    }
  }
  const carriers = new Set(
    graph.nodes
      .filter((n) => {
        const def = runtime.op(n.op, n.name);
        return def.stateVariant !== undefined && Object.hasOwn(def.attrs, STATE_VARIANTS_ATTR);
      })
      .map((n) => n.name),
  );
  const chosen = options.nodes ?? [...carriers];
  for (const name of chosen) {
    if (!carriers.has(name)) {
      const node = graph.nodes.find((n) => n.name === name);
      throw new DynnError(
        'INVALID_OPTION',
        node === undefined
          ? `core.add-state-variants: the graph has no node '${name}'.`
          : `core.add-state-variants: node '${name}' (${node.op}) declares no state variants.`,
        { node: name },
      );
    }
  }
  const picked = new Set(chosen);
  const nodes = graph.nodes.map((n) => {
    if (!picked.has(n.name)) return n;
    const held = (n.attrs[STATE_VARIANTS_ATTR] as string[] | undefined) ?? [];
    return {
      ...n,
      attrs: { ...n.attrs, [STATE_VARIANTS_ATTR]: [...new Set([...held, ...options.variants])] },
    };
  });
  const changed: Graph = { ...graph, nodes };
  const compiled = compileGraph(runtime, changed);
  const made = new Map<string, tf.Tensor>();
  const result: Graph = { ...changed, state: requiredTensors(compiled).state };
  for (const c of compiled.nodes) {
    if (!picked.has(c.node.name)) continue;
    for (const t of c.state) {
      if (t.variant === undefined || graph.state.some((s) => s.name === t.info.name)) continue;
      const base = c.state.find((d) => d.local === t.local && d.variant === undefined)!;
      const value = weights.get(base.info.name);
      if (value !== undefined) made.set(t.info.name, tf.clone(value));
    }
  }
  checkGraph(runtime, result);
  return { graph: result, weights: made };
}

/**
 * The pass `core.add-state-variants` (see {@link AddStateVariantsOptions}): per-variant copies of
 * the state of batch norms (or any op declaring state variants), selected at run time by
 * `options.core.stateVariant`.
 */
export const addStateVariantsPass = definePass<AddStateVariantsOptions>({
  name: 'core.add-state-variants',
  description:
    'Adds named state variants (e.g. batch-norm statistics per width), copied from the default state.',
  run: (graph, options, context) => addStateVariants(graph, options, context),
});
