import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';
import type { Graph } from './ir.js';
import { createModel, Model } from './model.js';
import { sameDims } from './ops/basic/shape-helpers.js';
import type { PassResult, WeightedGraph } from './plugin.js';
import type { Runtime } from './runtime.js';
import { checkGraph } from './validate.js';

/** The graph and weights of a model (its own variables, not copies). */
function weightsOf(source: Model | WeightedGraph | Graph): WeightedGraph {
  if (source instanceof Model) {
    return { graph: source.graph, weights: new Map<string, tf.Tensor>([...source.params, ...source.state]) };
  }
  if ('weights' in source) return source;
  return { graph: source, weights: new Map() };
}

/**
 * Runs pass `name` of `runtime` on a model, a graph with weights, or a graph alone, and returns
 * the new graph with a complete set of weights for it: the ones the pass made, and copies of the
 * source's for every other tensor the new graph declares (a tensor neither has, such as a new
 * exit head, is left out: `createModel` initialises it). The result is checked against the
 * runtime; the caller owns its weights (`createModel(runtime, result.graph, { weights:
 * result.weights })` takes them over; `saveModel(result, path)` writes it). The source is left as
 * it was.
 *
 * @example
 * ```ts
 * const smaller = runPass(runtime, 'core.remove-channels', model, { group: 3, channels: [0, 5] });
 * await saveModel(smaller, 'file://./smaller');
 * ```
 */
export function runPass<O>(
  runtime: Runtime,
  name: string,
  source: Model | WeightedGraph | Graph,
  options: O,
): WeightedGraph {
  const pass = runtime.pass(name);
  const input = weightsOf(source);
  const output = pass.run(input.graph, options, { runtime, weights: input.weights });
  const result: PassResult = 'graph' in output ? output : { graph: output };
  const made = result.weights ?? new Map<string, tf.Tensor>();
  const weights = new Map<string, tf.Tensor>();
  try {
    checkGraph(runtime, result.graph);
    for (const t of [...result.graph.params, ...result.graph.state]) {
      const given = made.get(t.name);
      const kept = input.weights.get(t.name);
      if (given !== undefined) {
        if (given.dtype !== t.dtype || !sameDims(given.shape, t.shape)) {
          throw new DynnError(
            'SHAPE_MISMATCH',
            `Pass '${name}' made weight '${t.name}' of ${given.dtype}[${given.shape.join(', ')}], but its graph ` +
              `declares ${t.dtype}[${t.shape.join(', ')}]: the pass must update the declaration with the weight.`,
          );
        }
        weights.set(t.name, given);
      } else if (kept !== undefined) weights.set(t.name, tf.clone(kept));
    }
  } catch (error) {
    tf.dispose([...made.values(), ...weights.values()]);
    throw error;
  }
  // Tensors the pass made that the new graph does not declare are nobody's: free them.
  tf.dispose([...made].filter(([n, t]) => weights.get(n) !== t).map(([, t]) => t));
  return { graph: result.graph, weights };
}

/**
 * A new model from pass `name` run on `model` (see {@link runPass}), on `model`'s runtime; new
 * tensors the pass declares without weights are initialised with `seed` (default 0). `model` is
 * left as it was: dispose it when done.
 *
 * @example
 * ```ts
 * const withExits = applyPass(model, 'early-exit.insert-exits', { every: 2 });
 * ```
 */
export function applyPass<O>(model: Model, name: string, options: O, seed?: number): Model {
  const { graph, weights } = runPass(model.runtime, name, model, options);
  try {
    return createModel(model.runtime, graph, { weights, ...(seed === undefined ? {} : { seed }) });
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
}
