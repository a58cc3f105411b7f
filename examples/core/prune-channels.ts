// Structured pruning with core's channel groups, on a MobileNetV2-like Keras model: import it,
// find the groups of coupled channels (DepGraph's idea: the residual stream's channels move
// through every block that adds to it), remove the weakest half of one group physically, and
// measure what that saves: parameters, FLOPs and latency, side by side in one run.
// CI runs `main()` (examples/core.node.test.ts).

import { timeSideBySide } from '@dynn/cli';
import {
  applyPass,
  type BackendName,
  type ChannelGroup,
  channelGroups,
  createRuntime,
  importLayersModel,
  type Model,
  useBackend,
} from '@dynn/core';
import { mobileNetV2Like, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';

/** What one model costs. */
export interface ModelCost {
  params: number;
  /** FLOPs of one batch. */
  flops: number;
  /** Median milliseconds per batch, after warm-up. */
  ms: number;
}

/** Sum of |w| per channel over every parameter axis of the group: the group's L1 importance. */
async function channelMagnitudes(model: Model, group: ChannelGroup): Promise<Float64Array> {
  const sums = new Float64Array(group.size);
  for (const member of group.params) {
    const weight = model.params.get(member.name)!;
    const values = await weight.data();
    const shape = weight.shape;
    const inner = shape.slice(member.axis + 1).reduce((a, b) => a * b, 1);
    for (let i = 0; i < values.length; i++) {
      const position = Math.floor(i / inner) % shape[member.axis]!;
      sums[member.channelOf[position]!]! += Math.abs(values[i]!);
    }
  }
  return sums;
}

function cost(model: Model, batch: number, ms: number): ModelCost {
  return { params: model.paramCount, flops: model.costs(batch).reduce((s, c) => s + c.flops, 0), ms };
}

export async function main(backend: BackendName = 'wasm', log: (line: string) => void = console.log) {
  await useBackend(backend);
  const runtime = createRuntime();
  // A small MobileNetV2-like Keras model (tfjs-layers), as its model.json and weights.
  const model = await importLayersModel(runtime, await mobileNetV2Like({ size: 32, classes: 10 }));

  // #region groups
  const { groups, barriers } = channelGroups(runtime, model.graph);
  for (const g of groups) {
    const layers = [...new Set(g.params.map((p) => p.owners![0]!.node))];
    const state = g.fixed.length === g.size ? `fixed (${g.blockers.join('; ')})` : 'prunable';
    log(`group ${g.id}: ${g.size} channels, ${layers.join(' + ')}: ${state}`);
  }
  // #endregion groups
  if (barriers.length > 0) log(`barriers: ${barriers.map((b) => b.node).join(', ')}`);

  // #region prune
  // The widest prunable group: block 3's expansion (36 channels through expand, BN, depthwise, BN).
  const group = groups.filter((g) => g.fixed.length === 0).sort((a, b) => b.size - a.size)[0]!;
  const magnitudes = await channelMagnitudes(model, group);
  const weakest = [...magnitudes.keys()]
    .sort((a, b) => magnitudes[a]! - magnitudes[b]!)
    .slice(0, group.size / 2);
  const pruned = applyPass(model, 'core.remove-channels', { group: group.id, channels: weakest });
  // #endregion prune

  const batch = 32;
  const x = seededUniform([batch, 32, 32, 3], { seed: 1 });
  // Side by side in one run, alternating, so that both see the same machine state.
  const predicts = [model, pruned].map((m) => async () => {
    const y = await m.predict(x);
    await y.data();
    y.dispose();
  });
  const [beforeMs, afterMs] = await timeSideBySide(predicts, { warmup: 3, repeats: 45 });
  const before = cost(model, batch, beforeMs!);
  const after = cost(pruned, batch, afterMs!);
  const want = await model.predict(x);
  const got = await pruned.predict(x);
  const same = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(want, -1), tf.argMax(got, -1)), 'float32')));
  const agreement = (await same.data())[0]!;
  tf.dispose([x, want, got, same]);

  log(`pruned group ${group.id}: ${weakest.length} of ${group.size} channels (lowest L1 magnitude)`);
  log(
    `parameters: ${before.params} -> ${after.params} (${((1 - after.params / before.params) * 100).toFixed(1)}% fewer)`,
  );
  log(
    `FLOPs per batch of ${batch}: ${before.flops} -> ${after.flops} (${((1 - after.flops / before.flops) * 100).toFixed(1)}% fewer)`,
  );
  log(
    `latency on ${backend}, median ms per batch: ${before.ms.toFixed(2)} -> ${after.ms.toFixed(2)} (x${(before.ms / after.ms).toFixed(2)})`,
  );
  log(
    `top-1 agreement with the unpruned model (random weights, not fine-tuned): ${(agreement * 100).toFixed(0)}%`,
  );
  model.dispose();
  pruned.dispose();
  return { groups, group, removed: weakest, before, after, agreement };
}
