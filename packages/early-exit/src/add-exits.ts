import { applyPass, type Model } from '@dynn/core';
import { type InsertExitsOptions, requireExitOp } from './insert-exits.js';

/** Options of {@link addExits}: where and which exits go, and the seed of their initial weights. */
export type AddExitsOptions = InsertExitsOptions & {
  /** Seed of the new exit heads' initial weights (default: the model's). */
  seed?: number;
};

/**
 * A new model: `model`'s graph with exits inserted (the pass `early-exit.insert-exits`, through
 * `applyPass`), holding copies of all of `model`'s weights and freshly initialised exit heads, on
 * `model`'s runtime, which must include the early-exit plugin (`createRuntime({ plugins:
 * [earlyExit()] })`; it throws `UNKNOWN_OP` otherwise). `model` is left as it was (dispose it
 * when done). With exits off, the new model's outputs equal `model`'s bit for bit.
 *
 * @example
 * ```ts
 * const runtime = createRuntime({ plugins: [earlyExit()] });
 * const trained = await loadModel(runtime, 'model.json');
 * const multiExit = addExits(trained, { every: 2, head: 'mlp' });
 * // the same as applyPass(trained, 'early-exit.insert-exits', { every: 2, head: 'mlp' })
 * await saveModel(multiExit, 'with-exits/');
 * ```
 */
export function addExits(model: Model, options: AddExitsOptions): Model {
  requireExitOp(model.runtime, 'addExits');
  const { seed, ...where } = options;
  return applyPass(model, 'early-exit.insert-exits', where, seed);
}

/**
 * The static network of a multi-exit model: a new model without its exits (the pass
 * `early-exit.remove-exits`, through `applyPass`) holding copies of its weights, which runs every
 * row to the final output and computes no exit head (the baseline a dynamic run is compared
 * with). `model`'s runtime must include the early-exit plugin. `model` is left as it was.
 *
 * @example
 * ```ts
 * const backbone = staticModel(multiExit);
 * // the same as applyPass(multiExit, 'early-exit.remove-exits', {})
 * ```
 */
export function staticModel(model: Model): Model {
  requireExitOp(model.runtime, 'staticModel');
  return applyPass(model, 'early-exit.remove-exits', {});
}

/**
 * The serving model of a sequence model trained with exits on every position: a new model of the
 * pass `early-exit.last-position` (through `applyPass`) holding copies of `model`'s weights.
 * `model`'s runtime must include the early-exit plugin; `model` is left as it was. Compose with
 * {@link staticModel} for the serving network without exits.
 *
 * @example
 * ```ts
 * const serving = lastPositionModel(trained); // logits [batch, classes] from the last position
 * // the same as applyPass(trained, 'early-exit.last-position', {})
 * ```
 */
export function lastPositionModel(model: Model): Model {
  requireExitOp(model.runtime, 'lastPositionModel');
  return applyPass(model, 'early-exit.last-position', {});
}
