import { createModel, createRuntime, type Graph, type Model } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { EXIT_OP } from './exit.js';
import { removeExits } from './exits.js';
import { type InsertExitsOptions, insertExits } from './insert-exits.js';
import { earlyExit } from './plugin.js';

/** Options of {@link addExits}: where and which exits go, and the seed of their initial weights. */
export type AddExitsOptions = Omit<InsertExitsOptions, 'runtime'> & {
  /** Seed of the new exit heads' initial weights (default: the model's). */
  seed?: number;
};

/**
 * A new model: `model`'s graph with exits inserted (see `insertExits`), holding copies of all of
 * `model`'s weights and freshly initialised exit heads. `model` is left as it was (dispose it when
 * done). With exits off, the new model's outputs equal `model`'s bit for bit. Its runtime is
 * `model`'s, with the early-exit plugin added when missing.
 *
 * @example
 * ```ts
 * const trained = await loadModel(runtime, 'model.json');
 * const multiExit = addExits(trained, { every: 2, head: 'mlp' });
 * await saveModel(multiExit, 'with-exits/');
 * ```
 */
export function addExits(model: Model, options: AddExitsOptions): Model {
  const { seed, ...where } = options;
  const runtime = model.runtime.hasOp(EXIT_OP)
    ? model.runtime
    : createRuntime({ plugins: [...model.runtime.plugins.filter((p) => p.domain !== 'core'), earlyExit()] });
  const graph = insertExits(model.graph, { ...where, runtime: model.runtime });
  const weights = new Map<string, tf.Tensor>(
    [...model.params, ...model.state].map(([name, v]) => [name, tf.clone(v)]),
  );
  try {
    return createModel(runtime, graph, { weights, ...(seed === undefined ? {} : { seed }) });
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
}

/**
 * A new model of `graph` holding copies of `model`'s weights of the same names (a graph derived
 * from `model.graph` that declares no new tensor), on `model`'s runtime.
 */
export function modelWithWeightsOf(model: Model, graph: Graph): Model {
  const names = [...graph.params, ...graph.state].map((t) => t.name);
  const weights = new Map(
    names.map((name) => [name, tf.clone(model.params.get(name) ?? model.state.get(name)!)]),
  );
  try {
    return createModel(model.runtime, graph, { weights });
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
}

/**
 * The static network of a multi-exit model: a new model of `removeExits(model.graph)` holding
 * copies of its weights, which runs every row to the final output and computes no exit head (the
 * baseline a dynamic run is compared with). `model` is left as it was.
 */
export function staticModel(model: Model): Model {
  return modelWithWeightsOf(model, removeExits(model.graph));
}
