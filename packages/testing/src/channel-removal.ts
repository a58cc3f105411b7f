import { type ChannelGroup, channelGroups, createModel, type Model, runPass } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { expectClose } from './closeness.js';

/** Options of {@link expectRemovalMatchesMask}. */
export interface RemovalCheckOptions {
  /** Which of the changeable, exact groups to check (default: all of them). */
  groups?: (group: ChannelGroup) => boolean;
  /** The channels to remove from a group (default: the first and, for 3+, the last that can change). */
  channels?: (group: ChannelGroup) => number[];
  /** Tolerance for {@link expectClose} (default: the backend's). */
  tolerance?: number;
}

/** What {@link expectRemovalMatchesMask} checked. */
export interface RemovalCheck {
  /** The group. */
  group: ChannelGroup;
  /** The channels removed. */
  channels: number[];
  /** Parameter elements before and after. */
  params: {
    /** The original model's. */
    before: number;
    /** The smaller model's. */
    after: number;
  };
}

/** The first and the last channel that can change (one when there is only one). */
function defaultChannels(group: ChannelGroup): number[] {
  const free = [...Array(group.size).keys()].filter((c) => !group.fixed.includes(c));
  return free.length >= 3 ? [free[0]!, free.at(-1)!] : [free[0]!];
}

/**
 * Checks the channel passes of `model` on `inputs`: for every group with channels that can change
 * and whose removal is exact, removing some of its channels (`core.remove-channels`) gives a valid model with fewer
 * parameters whose outputs equal the original's with those channels masked
 * (`core.mask-channels`), within the backend's tolerance. Disposes everything it creates and
 * returns what it checked (assert it is not empty).
 */
export async function expectRemovalMatchesMask(
  model: Model,
  inputs: tf.Tensor | Record<string, tf.Tensor>,
  options: RemovalCheckOptions = {},
): Promise<RemovalCheck[]> {
  const { groups } = channelGroups(model.runtime, model.graph);
  const chosen = groups.filter((g) => g.fixed.length < g.size && g.exact && (options.groups?.(g) ?? true));
  const checks: RemovalCheck[] = [];
  for (const group of chosen) {
    const channels = (options.channels ?? defaultChannels)(group);
    const removed = runPass(model.runtime, 'core.remove-channels', model, { group: group.id, channels });
    const smaller = createModel(model.runtime, removed.graph, { weights: removed.weights });
    const masked = runPass(model.runtime, 'core.mask-channels', model, { group: group.id, channels });
    const reference = createModel(model.runtime, masked.graph, { weights: masked.weights });
    try {
      const got = await smaller.run(inputs, { report: false });
      const want = await reference.run(inputs, { report: false });
      try {
        for (const [name, value] of Object.entries(want.outputs)) {
          await expectClose(got.outputs[name]!, value, {
            ...(options.tolerance === undefined ? {} : { tolerance: options.tolerance }),
            label: `group ${group.id} (${group.nodes.join(', ')}) without channels ${channels.join(', ')}, output '${name}'`,
          });
        }
      } finally {
        tf.dispose([...Object.values(got.outputs), ...Object.values(want.outputs)]);
      }
      const after = smaller.paramCount;
      if (!(after < model.paramCount)) {
        throw new Error(
          `group ${group.id}: removing channels ${channels.join(', ')} left ${after} parameters of ${model.paramCount}`,
        );
      }
      checks.push({ group, channels, params: { before: model.paramCount, after } });
    } finally {
      smaller.dispose();
      reference.dispose();
    }
  }
  return checks;
}
