import * as tf from '@tensorflow/tfjs-core';
import { analyzeChannels, type ChannelMember, changeableGroup, channelSet } from './channel-groups.js';
import { DynnError } from './errors.js';
import type { Graph } from './ir.js';
import { definePass, type PassContext, type PassResult } from './plugin.js';
import { resizeGraph } from './resize-graph.js';

/** Options of the passes that change the channels of one group. */
export interface ChannelGroupOptions {
  /** The group's id, from `channelGroups(runtime, graph)`. */
  group: number;
  /** The channels to change (0 to the group's size - 1). */
  channels: readonly number[];
}

/**
 * @internal Each parameter or state tensor's member axes with the positions to take along each,
 * in order (`positions(member)` gives them per member).
 */
export function gatherPlan(
  members: readonly ChannelMember[],
  positions: (member: ChannelMember) => Int32Array,
): Map<string, { axis: number; indices: Int32Array }[]> {
  const plan = new Map<string, { axis: number; indices: Int32Array }[]>();
  for (const m of members) {
    if (m.kind === 'value') continue;
    const list = plan.get(m.name) ?? [];
    list.push({ axis: m.axis, indices: positions(m) });
    plan.set(m.name, list);
  }
  return plan;
}

/** @internal `tensor` gathered along each axis of `steps` in turn: a new tensor. */
export function gatherAxes(
  tensor: tf.Tensor,
  steps: readonly { axis: number; indices: Int32Array }[],
): tf.Tensor {
  return tf.tidy(() =>
    // The copy gives the result its own storage: wasm's gather hands back a reshaped view whose
    // recorded shape is gather's internal rank-4 one, which wasm's fused kernels then read.
    tf.clone(
      steps.reduce<tf.Tensor>(
        (t, step) => tf.gather(t, tf.tensor1d(step.indices, 'int32'), step.axis),
        tensor,
      ),
    ),
  );
}

/** @internal The context's weights gathered by `plan`: new tensors (none left behind on a failure). */
export function gatherWeights(
  plan: ReadonlyMap<string, readonly { axis: number; indices: Int32Array }[]>,
  context: PassContext,
  pass: string,
): Map<string, tf.Tensor> {
  const weights = new Map<string, tf.Tensor>();
  try {
    for (const [name, steps] of plan)
      weights.set(name, gatherAxes(contextWeight(context, name, pass), steps));
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
  return weights;
}

/** @internal The weight `name` from a pass's context, or an error saying the pass needs the weights. */
export function contextWeight(context: PassContext, name: string, pass: string): tf.Tensor {
  const weight = context.weights.get(name);
  if (weight === undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass} rewrites weight '${name}', which it was not given: run it on a model or on a graph with its weights (runPass / applyPass).`,
    );
  }
  return weight;
}

/**
 * Physically removes channels of one group: every parameter, state tensor and value axis of the
 * group loses the positions holding them, and every node on the way gets its new attributes
 * (fewer units, filters, heads...). With an exact group (see `ChannelGroup.exact`), the smaller
 * graph computes what the original computes with those channels' parameters zeroed.
 */
export function removeChannels(graph: Graph, options: ChannelGroupOptions, context: PassContext): PassResult {
  const pass = 'core.remove-channels';
  const analysis = analyzeChannels(context.runtime, graph);
  const group = changeableGroup(analysis, options?.group, pass);
  const removed = channelSet(group, options.channels, pass);
  if (removed.size === group.size) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass}: removing all ${group.size} channels of group ${group.id} leaves its layers empty; keep at least one.`,
      group.nodes[0] === undefined ? {} : { node: group.nodes[0] },
    );
  }
  const kept = (m: ChannelMember) =>
    Int32Array.from(m.channelOf.keys()).filter((j) => !removed.has(m.channelOf[j]!));
  const sizes = new Map<string, Map<number, number>>();
  for (const m of group.values) {
    const axes = sizes.get(m.name) ?? new Map<number, number>();
    axes.set(m.axis, kept(m).length);
    sizes.set(m.name, axes);
  }
  const spaceSizes = new Map<string, Map<string, number>>();
  for (const space of analysis.spaces.get(group.id)!) {
    const axes = spaceSizes.get(space.node) ?? new Map<string, number>();
    axes.set(space.space, space.channelOf.filter((c) => !removed.has(c)).length);
    spaceSizes.set(space.node, axes);
  }
  const result = resizeGraph(context.runtime, graph, analysis.compiled, sizes, spaceSizes);
  return {
    graph: result,
    weights: gatherWeights(gatherPlan(analysis.members.get(group.id)!, kept), context, pass),
  };
}

/** The pass `core.remove-channels` ({@link removeChannels}). */
export const removeChannelsPass = definePass<ChannelGroupOptions>({
  name: 'core.remove-channels',
  description: 'Physically removes channels of one channel group: smaller weights, fewer FLOPs.',
  run: removeChannels,
});
