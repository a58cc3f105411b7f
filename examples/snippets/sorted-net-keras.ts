// Nesting a trained model imported from Keras: the channels of each group sorted by importance,
// the nested model checked against the original, and what a half-width sub-network computes.
// The model is a small MobileNetV2-like tfjs-layers model from @dynn/testing standing in for
// yours (its artifacts are what `model.save` writes). docs/sorted-net.md quotes its region;
// examples/sorted-net.node.test.ts runs `main()`.
import { type BackendName, createRuntime, importLayersModel, type Model, useBackend } from '@dynn/core';
import { describeNesting, nestModel, sortedNet, subNetworkOptions } from '@dynn/sorted-net';
import { mobileNetV2Like, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';

/** What the snippet found. */
export interface NestedKerasResult {
  /** Width knobs: name and channels. */
  knobs: [string, number][];
  /** Residual blocks per depth stage. */
  stageBlocks: number[];
  /** Largest difference between the nested model at full width and depth and the imported one. */
  fullDifference: number;
  /** FLOPs per image: the full sub-network, then width 0.5. */
  flops: { full: number; half: number };
}

export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<NestedKerasResult> {
  await useBackend(backend);
  const keras = await mobileNetV2Like({ size: 16, classes: 5, seed: 3 });
  const models: Model[] = [];
  const x = seededNormal([4, 16, 16, 3], { seed: 1 });
  try {
    // #region nest-imported
    // The runtime must include sortedNet(): the nested model runs its ops.
    const runtime = createRuntime({ plugins: [sortedNet()] });
    const model = await importLayersModel(runtime, keras); // or 'file://path/to/model.json'
    // Channels sorted by their L1 importance (coupled layers together), so that every prefix of a
    // group is its best channels; channel counts rounded to multiples of 2.
    const nested = await nestModel(model, { multiple: 2, sort: 'l1' });
    const { knobs, stages } = describeNesting(nested.graph);
    for (const knob of knobs) log(`knob ${knob.name}: ${knob.size} channels, ${knob.nodes.length} layers`);
    // With no run options it is the full sub-network: the imported model's outputs.
    const original = await model.run(x);
    const full = await nested.run(x, { report: true });
    const half = await nested.run(x, { report: true, options: subNetworkOptions({ width: 0.5 }) });
    // #endregion nest-imported
    models.push(model, nested);
    const output = nested.graph.outputs[0]!.name;
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(full.outputs[output]!, original.outputs[output]!))));
    const [fullDifference] = await d.data();
    tf.dispose([
      d,
      ...Object.values(original.outputs),
      ...Object.values(full.outputs),
      ...Object.values(half.outputs),
    ]);
    const rows = x.shape[0]!;
    const flops = { full: full.report!.flops / rows, half: half.report!.flops / rows };
    log(
      `full sub-network: max difference ${fullDifference!.toExponential(1)} to the Keras model; ` +
        `width 0.5: ${(flops.half / 1e6).toFixed(3)} of ${(flops.full / 1e6).toFixed(3)} MFLOPs per image`,
    );
    return {
      knobs: knobs.map((k) => [k.name, k.size]),
      stageBlocks: stages.map((s) => s.blocks.length),
      fullDifference: fullDifference!,
      flops,
    };
  } finally {
    for (const m of models) m.dispose();
    x.dispose();
  }
}
