import {
  type ChannelGroup,
  channelGroups,
  DynnError,
  type Model,
  type Runtime,
  type WeightedGraph,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** How a channel's importance is measured: the L1 or L2 norm of its weights. */
export type ImportanceCriterion = 'l1' | 'l2';

/**
 * The importance of each channel of each group: per parameter tensor of the group, the norm of
 * the weights each channel holds (over every other axis), divided by the tensor's mean so that
 * every layer of the group weighs the same, summed over the group's parameters (Torch-Pruning's
 * group magnitude importance). Read back asynchronously, so it works on every backend.
 */
export async function channelImportance(
  runtime: Runtime,
  source: Model | WeightedGraph,
  criterion: ImportanceCriterion = 'l1',
  groups?: readonly number[],
): Promise<Map<number, Float64Array>> {
  const graph = source.graph;
  const weights: ReadonlyMap<string, tf.Tensor> =
    'weights' in source ? source.weights : new Map([...source.params, ...source.state]);
  const analysis = channelGroups(runtime, graph);
  const wanted =
    groups === undefined ? analysis.groups : analysis.groups.filter((g) => groups.includes(g.id));
  const scores = new Map<number, Float64Array>();
  for (const group of wanted) scores.set(group.id, await groupImportance(group, weights, criterion));
  return scores;
}

async function groupImportance(
  group: ChannelGroup,
  weights: ReadonlyMap<string, tf.Tensor>,
  criterion: ImportanceCriterion,
): Promise<Float64Array> {
  const score = new Float64Array(group.size);
  for (const member of group.params) {
    const w = weights.get(member.name);
    if (w === undefined) {
      throw new DynnError(
        'INVALID_OPTION',
        `Channel importance needs weight '${member.name}', which was not given.`,
      );
    }
    const axes = w.shape.map((_, i) => i).filter((i) => i !== member.axis);
    const norms = tf.tidy(() => {
      const magnitude = criterion === 'l1' ? tf.abs(w) : tf.square(w);
      const summed = axes.length === 0 ? magnitude : tf.sum(magnitude, axes);
      return criterion === 'l1' ? summed : tf.sqrt(summed);
    });
    const values = await norms.data();
    norms.dispose();
    let mean = 0;
    for (const v of values) mean += v / values.length;
    if (mean === 0) continue;
    values.forEach((v, j) => {
      score[member.channelOf[j]!]! += v / mean;
    });
  }
  return score;
}

/** Channel orders, most important first, for `sorted-net.nest`'s `orders` option. */
export function importanceOrders(scores: ReadonlyMap<number, Float64Array>): Record<number, number[]> {
  const orders: Record<number, number[]> = {};
  for (const [id, score] of scores) {
    orders[id] = Array.from(score.keys()).sort((a, b) => score[b]! - score[a]! || a - b);
  }
  return orders;
}
