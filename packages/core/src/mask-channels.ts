import * as tf from '@tensorflow/tfjs-core';
import { analyzeChannels, changeableGroup, channelSet } from './channel-groups.js';
import type { Graph } from './ir.js';
import { definePass, type PassContext, type PassResult } from './plugin.js';
import { type ChannelGroupOptions, contextWeight } from './remove-channels.js';

/**
 * Zeroes the parameters of some channels of one group, every axis of the group (state such as
 * running statistics stays): soft pruning, keeping every shape. For an exact group the model then
 * computes what `core.remove-channels` of the same channels computes.
 */
export function maskChannels(graph: Graph, options: ChannelGroupOptions, context: PassContext): PassResult {
  const pass = 'core.mask-channels';
  const analysis = analyzeChannels(context.runtime, graph);
  const group = changeableGroup(analysis, options?.group, pass);
  const masked = channelSet(group, options.channels, pass);
  const weights = new Map<string, tf.Tensor>();
  const names = [...new Set(group.params.map((m) => m.name))];
  for (const name of names) {
    const weight = contextWeight(context, name, pass);
    weights.set(
      name,
      tf.tidy(() =>
        group.params
          .filter((m) => m.name === name)
          .reduce<tf.Tensor>((t, m) => {
            const keep = Float32Array.from(m.channelOf, (c) => (masked.has(c) ? 0 : 1));
            const shape = t.shape.map((d, axis) => (axis === m.axis ? d : 1));
            return tf.mul(t, tf.tensor(keep, shape, 'float32'));
          }, weight),
      ),
    );
  }
  return { graph, weights };
}

/** The pass `core.mask-channels` ({@link maskChannels}). */
export const maskChannelsPass = definePass<ChannelGroupOptions>({
  name: 'core.mask-channels',
  description: 'Zeroes the parameters of some channels of one channel group (shapes stay).',
  run: maskChannels,
});
