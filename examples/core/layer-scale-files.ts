// Model files that use a plugin's ops, and the plugin's op-set versions: a pass that declares the
// tensors and the op set of what it adds, a save and a load with and without the plugin, and an
// opset 2 of the plugin that still loads opset 1 files. docs/plugins.md quotes its regions and its
// output (layer-scale-files.output.txt); examples/plugins.node.test.ts runs `main()` (Node: it
// writes model files to a folder).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Attrs,
  addTensor,
  type BackendName,
  createModel,
  createRuntime,
  defineOp,
  definePass,
  definePlugin,
  type Graph,
  GraphBuilder,
  type GraphNode,
  inferShapes,
  isDynnError,
  loadModel,
  type Model,
  nodeTensorSpecs,
  type Plugin,
  type Runtime,
  runPass,
  saveModel,
  useBackend,
  validateGraph,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { layerScale } from './layer-scale-plugin.js';

// #region attrs
/** Attributes of `layer-scale.Scale` since opset 2, as `ctx.attrs` holds them (defaults filled in). */
interface ScaleAttrs extends Attrs {
  /** Initial value of every channel's scale. */
  init: number;
  /** Adds a learned per-channel shift after the scale (opset 2; false is opset 1's op). */
  bias: boolean;
}
// #endregion attrs

// #region op-v2
/** The plugin's op-set version: the version every graph using its ops records. */
export const LAYER_SCALE_OPSET = 2;

/**
 * `layer-scale.Scale` as of opset 2. The new attribute `bias` defaults to opset 1's behaviour, so a
 * node written for opset 1 (no `bias`) computes exactly what it did.
 */
export const scaleOpV2 = defineOp<ScaleAttrs>({
  type: 'layer-scale.Scale',
  version: 2, // the opset in which the op last changed
  description: 'Multiplies each channel by a learned scale, then adds a learned shift if `bias`.',
  attrs: {
    init: { kind: 'float', default: 1e-1, min: 0, doc: 'initial scale of every channel' },
    bias: { kind: 'bool', default: false, doc: 'adds a learned per-channel shift (opset 2)' },
  },
  inputs: { min: 1 },
  params(attrs, [x]) {
    const channels = [x!.shape.at(-1) as number];
    return [
      { name: 'gamma', shape: channels, init: { kind: 'constant', value: attrs.init } },
      ...(attrs.bias ? [{ name: 'beta', shape: channels, init: { kind: 'zeros' as const } }] : []),
    ];
  },
  inferShape(_, [x]) {
    if (typeof x!.shape.at(-1) !== 'number') throw new Error('the channel (last) dimension must be known');
    return [{ shape: x!.shape, dtype: x!.dtype }];
  },
  forward: (ctx, [x]) =>
    tf.tidy(() => {
      const scaled = tf.mul(x!, ctx.params.gamma!);
      return [ctx.attrs.bias ? tf.add(scaled, ctx.params.beta!) : scaled];
    }),
  flops: (attrs, [x]) => x!.reduce((a, b) => a * b, 1) * (attrs.bias ? 2 : 1),
});
// #endregion op-v2

/** The plugin at opset 2: the same package, name and domain as opset 1's. */
export function layerScaleV2(): Plugin {
  return definePlugin({
    name: 'layer-scale-example',
    domain: 'layer-scale',
    opset: LAYER_SCALE_OPSET,
    ops: [scaleOpV2],
    passes: [insertScalesV2],
  });
}

/** Options of the opset 2 pass `layer-scale.insert`. */
export interface InsertScalesOptions {
  /** Initial scale (default 0.1). */
  init?: number;
  /** Adds a learned shift too (default false). */
  bias?: boolean;
}

// #region pass
/** Inserts a Scale after every `core.Dense`, with the tensors it needs and the plugin's opset. */
export const insertScalesV2 = definePass<InsertScalesOptions>({
  name: 'layer-scale.insert',
  description: 'Inserts a learned per-channel scale after every Dense layer.',
  run(graph, options, { runtime }): Graph {
    // The runtime the pass runs under (one with this plugin): its ops infer the shapes the new
    // nodes read, and validate the result.
    const values = inferShapes(runtime, graph);
    const nodes: GraphNode[] = [];
    const params = graph.params.map((t) => ({ ...t }));
    for (const node of graph.nodes) {
      if (node.op !== 'core.Dense') {
        nodes.push(node);
        continue;
      }
      const output = node.outputs[0]!;
      const unscaled = `${output}/unscaled`;
      const scale: GraphNode = {
        name: `${node.name}_scale`,
        op: 'layer-scale.Scale',
        inputs: [unscaled],
        outputs: [output],
        attrs: { init: options.init ?? 0.1, bias: options.bias ?? false },
      };
      nodes.push({ ...node, outputs: [unscaled] }, scale);
      // 1. Declare the tensors the new node needs, as its op's `params` (and `state`) name them:
      //    `<node>/<name>`, or the shared name (added once).
      const input = { ...values.get(output)!, name: unscaled };
      for (const { info } of nodeTensorSpecs(runtime, scale, [input]).params) addTensor(params, info);
    }
    // 2. Record the domain at the plugin's opset: saveModel writes it, loadModel checks it.
    const opsets = { ...graph.opsets, 'layer-scale': LAYER_SCALE_OPSET };
    const result: Graph = { ...graph, opsets, nodes, params };
    // 3. Validate here, so a mistake fails in the pass, naming the node.
    validateGraph(runtime, result);
    return result;
  },
});
// #endregion pass

/** A small MLP whose Dense layers `layer-scale.insert` scales. */
function mlp(runtime: Runtime): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  const h = b.add('core.Dense', x, { units: 16, activation: 'relu' }, { name: 'hidden' });
  return b.build({ logits: b.add('core.Dense', h, { units: 2 }, { name: 'head' }) });
}

/** The model's outputs for `x`, as numbers (then disposed). */
async function outputsOf(model: Model, x: tf.Tensor): Promise<number[]> {
  const { outputs } = await model.run(x);
  const values = Array.from(await outputs.logits!.data());
  tf.dispose(Object.values(outputs));
  return values;
}

/** `code: message` of what `promise` rejects with, the folder shown as `models`. */
async function failure(promise: Promise<unknown>, folder: string): Promise<string> {
  const error = await promise.then(
    (model) => {
      (model as Model).dispose();
      throw new Error('expected the load to fail');
    },
    (caught: unknown) => caught,
  );
  if (!isDynnError(error)) throw error;
  return `${error.code}: ${error.message.replaceAll(folder, 'models')}`;
}

/**
 * Saves a model with opset 1 plugin ops and loads it with the plugin, without it, and with the
 * plugin's opset 2; then shows an opset 2 file refused by the opset 1 plugin. Writes to `folder`
 * (default: a new temporary folder, removed at the end).
 */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
  folder?: string,
): Promise<void> {
  await useBackend(backend);
  const dir = folder ?? (await mkdtemp(join(tmpdir(), 'dynn-layer-scale-')));
  const x = tf.randomNormal([3, 4], 0, 1, 'float32', 7);
  const models: Model[] = [];
  try {
    // #region save-load
    const runtime = createRuntime({ plugins: [layerScale()] }); // opset 1
    const { graph } = runPass(runtime, 'layer-scale.insert', mlp(runtime), { init: 0.5 });
    const model = createModel(runtime, graph, { seed: 1 });
    await saveModel(model, join(dir, 'v1')); // the graph, opsets included, and the weights
    const loaded = await loadModel(runtime, join(dir, 'v1')); // a runtime with the plugin
    // #endregion save-load
    models.push(model, loaded);
    const expected = await outputsOf(model, x);
    log(`saved opsets: ${JSON.stringify(graph.opsets)}`);
    log(`loaded with the plugin: same outputs ${String(same(await outputsOf(loaded, x), expected))}`);

    // #region missing-plugin
    const withoutPlugin = createRuntime(); // core ops only
    log(`without the plugin: ${await failure(loadModel(withoutPlugin, join(dir, 'v1')), dir)}`);
    // #endregion missing-plugin

    // #region versions
    // An opset 1 file loads with the plugin's opset 2, and computes what it did.
    const runtimeV2 = createRuntime({ plugins: [layerScaleV2()] });
    const upgraded = await loadModel(runtimeV2, join(dir, 'v1'));
    models.push(upgraded);
    log(`opset 1 file, opset 2 plugin: same outputs ${String(same(await outputsOf(upgraded, x), expected))}`);

    // A file written with opset 2 needs it: the opset 1 plugin refuses it, naming the package.
    const { graph: graphV2 } = runPass(runtimeV2, 'layer-scale.insert', mlp(runtimeV2), { bias: true });
    const modelV2 = createModel(runtimeV2, graphV2, { seed: 1 });
    models.push(modelV2);
    await saveModel(modelV2, join(dir, 'v2'));
    log(`opset 2 file, opset 1 plugin: ${await failure(loadModel(runtime, join(dir, 'v2')), dir)}`);
    // #endregion versions
  } finally {
    for (const model of models) model.dispose();
    x.dispose();
    if (folder === undefined) await rm(dir, { recursive: true, force: true });
  }
}

function same(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}
