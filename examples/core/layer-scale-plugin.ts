// A complete dynn plugin: one op with a learnable parameter, one pass that inserts it, and the
// plugin object that bundles them. docs/plugins.md walks through this file; CI runs `main()`.
import {
  type BackendName,
  createModel,
  createRuntime,
  defineOp,
  definePass,
  definePlugin,
  fit,
  type Graph,
  GraphBuilder,
  type GraphNode,
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
});

/** Inserts a Scale after every `core.Dense` node: a pure function from graph to graph. */
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
): Promise<{ accuracy: number; flops: number }> {
  await useBackend(backend);
  const runtime = createRuntime({ plugins: [layerScale()] });
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  const h = b.add('core.Dense', x, { units: 16, activation: 'relu' }, { name: 'hidden' });
  const logits = b.add('core.Dense', h, { units: 2 }, { name: 'head' });
  const graph = runtime.pass('layer-scale.insert').run(b.build({ logits }), { init: 0.5 });

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
  tf.dispose([features, labels, ...Object.values(outputs)]);
  model.dispose();
  return { accuracy, flops: report!.flops };
}
