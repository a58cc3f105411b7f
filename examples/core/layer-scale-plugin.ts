// A complete dynn plugin: one op with a learnable parameter and a channel declaration, one pass
// that inserts it, and the plugin object that bundles them. docs/plugins.md walks through this file;
// CI runs `main()`.
import {
  applyPass,
  type BackendName,
  channelGroups,
  createModel,
  createRuntime,
  defineOp,
  definePass,
  definePlugin,
  fit,
  type Graph,
  GraphBuilder,
  type GraphNode,
  inputTensor,
  outputTensor,
  paramTensor,
  runPass,
  useBackend,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** Attributes of `layer-scale.Scale`. */
interface ScaleAttrs {
  [key: string]: number;
  /** Initial value of every channel's scale. */
  init: number;
}

/** Multiplies each channel (last axis) by a learned scale, as CaiT's LayerScale does. */
export const scaleOp = defineOp<ScaleAttrs>({
  type: 'layer-scale.Scale',
  version: 1,
  description: 'Multiplies each channel by a learned scale.',
  attrs: { init: { kind: 'float', default: 1e-1, min: 0, doc: 'initial scale of every channel' } },
  inputs: { min: 1 },
  params: (attrs, [x]) => [
    { name: 'gamma', shape: [x!.shape.at(-1) as number], init: { kind: 'constant', value: attrs.init } },
  ],
  inferShape(_, [x]) {
    if (typeof x!.shape.at(-1) !== 'number') throw new Error('the channel (last) dimension must be known');
    return [{ shape: x!.shape, dtype: x!.dtype }];
  },
  forward: (ctx, [x]) => [tf.mul(x!, ctx.params.gamma!)],
  flops: (_, [x]) => x!.reduce((a, b) => a * b, 1),
  // #region channels
  // Channel c of the input, of gamma and of the output are one channel: pruning the Dense before
  // this Scale removes gamma's entry too. The other axes (time...) pass through unchanged.
  channels(_, [x], [y]) {
    const last = x!.shape.length - 1;
    return {
      spaces: { c: x!.shape[last] as number },
      axes: [
        { tensor: inputTensor(0), axis: last, space: 'c' },
        { tensor: paramTensor('gamma'), axis: 0, space: 'c' },
        { tensor: outputTensor(0), axis: y!.shape.length - 1, space: 'c' },
      ],
    };
  },
  // #endregion channels
});

/**
 * Inserts a Scale after every `core.Dense` node: a pure function from graph to graph. It makes no
 * weight (the new scales start at `init`) and needs neither the runtime nor the weights, so its
 * `run` leaves out the third argument, the context.
 */
export const insertScales = definePass<{ init?: number }>({
  name: 'layer-scale.insert',
  description: 'Inserts a learned per-channel scale after every Dense layer.',
  run(graph, options): Graph {
    const init = options.init ?? 0.1;
    const nodes: GraphNode[] = [];
    const params = [...graph.params];
    for (const node of graph.nodes) {
      if (node.op !== 'core.Dense') {
        nodes.push(node);
        continue;
      }
      // The Dense now writes an intermediate value and the Scale takes over its output name, so
      // every reader of the Dense (and every graph output) reads the scaled value unchanged.
      const output = node.outputs[0]!;
      const unscaled = `${output}/unscaled`;
      const name = `${node.name}_scale`;
      nodes.push({ ...node, outputs: [unscaled] });
      nodes.push({ name, op: 'layer-scale.Scale', inputs: [unscaled], outputs: [output], attrs: { init } });
      params.push({
        name: `${name}/gamma`,
        dtype: 'float32',
        shape: [node.attrs.units as number],
        init: { kind: 'constant', value: init },
      });
    }
    return { ...graph, opsets: { ...graph.opsets, 'layer-scale': 1 }, nodes, params };
  },
});

/** The plugin: plain data, no side effects. Pass it to `createRuntime({ plugins: [...] })`. */
export const layerScale = () =>
  definePlugin({
    name: 'layer-scale-example',
    domain: 'layer-scale',
    opset: 1,
    ops: [scaleOp],
    passes: [insertScales],
  });

/** Builds an MLP, inserts scales with the pass, trains it briefly and prints its compute report. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<{ accuracy: number; flops: number; params: { before: number; after: number } }> {
  await useBackend(backend);
  const runtime = createRuntime({ plugins: [layerScale()] });
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  const h = b.add('core.Dense', x, { units: 16, activation: 'relu' }, { name: 'hidden' });
  const logits = b.add('core.Dense', h, { units: 2 }, { name: 'head' });
  // runPass runs a pass of the runtime and checks its graph against the runtime's ops.
  const { graph } = runPass(runtime, 'layer-scale.insert', b.build({ logits }), { init: 0.5 });

  // A toy task: is the sum of the features positive?
  const features = tf.randomNormal([256, 4], 0, 1, 'float32', 3);
  const labels = tf.tidy(() => tf.cast(tf.greater(tf.sum(features, 1), 0), 'int32'));
  const model = createModel(runtime, graph, { seed: 1 });
  const optimizer = tf.train.adam(0.02);
  const history = await fit(model, { x: features, y: labels }, { epochs: 20, batchSize: 32, optimizer });
  optimizer.dispose();
  const { outputs, report } = await model.run(features);
  const accuracy = history.epochs.at(-1)!.accuracy!;
  log(`nodes: ${graph.nodes.map((n) => `${n.name} (${n.op})`).join(', ')}`);
  log(
    `training accuracy ${(accuracy * 100).toFixed(1)}%, ${report!.flops} FLOPs for ${report!.batchSize} rows`,
  );
  // #region prune
  // Thanks to Scale's channel declaration, the hidden layer's units and their scales form one
  // group, which the core's passes can shrink like any other.
  const { groups } = channelGroups(runtime, graph);
  const hiddenUnits = groups.find((g) => g.params.some((p) => p.name === 'hidden_scale/gamma'))!;
  const smaller = applyPass(model, 'core.remove-channels', { group: hiddenUnits.id, channels: [0, 1, 2, 3] });
  log(
    `channel group ${hiddenUnits.id}: ${hiddenUnits.params.map((p) => `${p.name} axis ${p.axis}`).join(', ')}`,
  );
  log(
    `without 4 of its ${hiddenUnits.size} channels: ${smaller.paramCount} of ${model.paramCount} parameters`,
  );
  // #endregion prune
  const params = { before: model.paramCount, after: smaller.paramCount };
  tf.dispose([features, labels, ...Object.values(outputs)]);
  smaller.dispose();
  model.dispose();
  return { accuracy, flops: report!.flops, params };
}
