import { applyPass, channelGroups, DynnError, type Model } from '@dynn/core';
import { channelImportance, type ImportanceCriterion, importanceOrders } from './importance.js';
import type { NestOptions } from './nest.js';

/** Options of {@link nestModel}: the pass's, and how channels are sorted first. */
export interface NestModelOptions extends Omit<NestOptions, 'orders'> {
  /** Sort each group's channels by this importance before nesting (default `l1`), or keep their order (`none`). */
  sort?: ImportanceCriterion | 'none';
}

/**
 * A nested model from a trained or imported one (its runtime must include `sortedNet()`): each
 * changeable channel group's channels sorted by importance, so that every prefix is the best of
 * its size, then the pass `sorted-net.nest`. With every knob at full width and full depth it
 * computes what `model` computes. `model` is left as it was.
 *
 * @example
 * ```ts
 * const model = await importLayersModel(createRuntime({ plugins: [sortedNet()] }), 'file://./keras/model.json');
 * const nested = await nestModel(model, { multiple: 4 });
 * ```
 */
export async function nestModel(model: Model, options: NestModelOptions = {}): Promise<Model> {
  if (!model.runtime.hasOp('sorted-net.Nested')) {
    throw new DynnError(
      'INVALID_OPTION',
      'nestModel needs a model whose runtime includes sortedNet(): createRuntime({ plugins: [sortedNet()] }), then create or import the model with it.',
    );
  }
  const { sort = 'l1', ...rest } = options;
  let orders: Record<number, number[]> | undefined;
  if (sort !== 'none') {
    const { groups: all } = channelGroups(model.runtime, model.graph);
    const groups = (options.groups ?? all.map((g) => g.id)).filter((id) => all[id]?.fixed.length === 0);
    orders = importanceOrders(await channelImportance(model.runtime, model, sort, groups));
  }
  return applyPass<NestOptions>(model, 'sorted-net.nest', { ...rest, ...(orders ? { orders } : {}) });
}
