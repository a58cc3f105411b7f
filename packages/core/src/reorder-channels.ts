import { analyzeChannels, type ChannelMember, changeableGroup } from './channel-groups.js';
import { DynnError } from './errors.js';
import type { Graph } from './ir.js';
import { definePass, type PassContext, type PassResult } from './plugin.js';
import { gatherPlan, gatherWeights } from './remove-channels.js';

/** Options of the pass `core.reorder-channels`. */
export interface ReorderChannelsOptions {
  /** The group's id, from `channelGroups(runtime, graph)`. */
  group: number;
  /** The new order: channel `k` becomes what channel `order[k]` was (a permutation of 0 to size - 1). */
  order: readonly number[];
}

/**
 * Reorders the channels of one group on every axis that holds them (e.g. by importance, so that
 * every prefix of a layer is its best narrower version). The graph is unchanged and the model
 * computes the same outputs. An order that would move a channel of one concatenated input into
 * another's place is refused.
 */
export function reorderChannels(
  graph: Graph,
  options: ReorderChannelsOptions,
  context: PassContext,
): PassResult {
  const pass = 'core.reorder-channels';
  const analysis = analyzeChannels(context.runtime, graph);
  const group = changeableGroup(analysis, options?.group, pass);
  const order = options.order;
  const seen = new Set<number>();
  const valid =
    Array.isArray(order) &&
    order.length === group.size &&
    order.every((c) => Number.isInteger(c) && c >= 0 && c < group.size && !seen.has(c) && seen.add(c)) &&
    group.fixed.every((c) => order[c] === c);
  if (!valid) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass}: 'order' must be a permutation of 0 to ${group.size - 1} (group ${group.id}) that keeps its fixed ` +
        `channels [${group.fixed.join(', ')}] in place; got ${JSON.stringify(order)}.`,
    );
  }
  /** New position j of a member holds the old position with channel order[channelOf[j]] and the same rank among that channel's positions. */
  const permuted = (m: ChannelMember): Int32Array => {
    const byChannel = new Map<number, number[]>();
    m.channelOf.forEach((c, j) => {
      const list = byChannel.get(c) ?? [];
      list.push(j);
      byChannel.set(c, list);
    });
    const rank = new Map<number, number>();
    return Int32Array.from(m.channelOf, (c) => {
      const slot = rank.get(c) ?? 0;
      rank.set(c, slot + 1);
      const source = byChannel.get(order[c]!)?.[slot];
      if (source === undefined || byChannel.get(order[c]!)!.length !== byChannel.get(c)!.length) {
        throw new DynnError(
          'INVALID_OPTION',
          `${pass}: the order moves channel ${order[c]} of group ${group.id} where '${m.name}' (axis ${m.axis}) ` +
            `holds channel ${c} but not channel ${order[c]}: keep each concatenated part's channels within it.`,
        );
      }
      return source;
    });
  };
  for (const m of group.values) permuted(m);
  const plan = gatherPlan(analysis.members.get(group.id)!, permuted);
  return { graph, weights: gatherWeights(plan, context, pass) };
}

/** The pass `core.reorder-channels` ({@link reorderChannels}). */
export const reorderChannelsPass = definePass<ReorderChannelsOptions>({
  name: 'core.reorder-channels',
  description: 'Reorders the channels of one channel group on every axis that holds them (same outputs).',
  run: reorderChannels,
});
