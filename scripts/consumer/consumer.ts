// Type-checked (not run) by the consumer test under `moduleResolution: bundler` and `node16`: the
// published type declarations of every package, as an app written in TypeScript uses them.
import {
  createModel,
  createRuntime,
  DynnError,
  type Graph,
  GraphBuilder,
  isDynnError,
  type Model,
  type RunResult,
  runPass,
  Trainer,
  useBackend,
  type WeightedGraph,
} from '@dynn/core';
import { type Digits, loadDigits } from '@dynn/datasets';
import { earlyExit, exitRunOptions, type InsertExitsOptions } from '@dynn/early-exit';
import {
  addMoeLayer,
  type MoeLayerOptions,
  type MoeRunOptions,
  moeOptions,
  moeRouter,
  type RouterKind,
  type Routing,
  routeTokens,
} from '@dynn/moe-router';
import {
  calibrateBatchNorm,
  describeNesting,
  type ExportOptions,
  fitSorted,
  type Nesting,
  nestModel,
  residualCnnGraph,
  type SubNetwork,
  sortedNet,
  sortedObjective,
  sortedWindows,
  subNetworkOptions,
} from '@dynn/sorted-net';
import {
  addSparseAttention,
  type BlockPlan,
  type Pattern,
  planBlocks,
  type RoutingAttrs,
  type SparseAttentionOptions,
  sparseAttention,
} from '@dynn/sparse-attention';
import { type SeededOptions, seededNormal } from '@dynn/testing';
import type * as tf from '@tensorflow/tfjs-core';

export async function main(): Promise<number> {
  await useBackend('wasm');
  const runtime = createRuntime({ plugins: [earlyExit()] });
  const b = new GraphBuilder(runtime);
  const x = b.input('pixels', 'float32', ['batch', 64]);
  const h = b.add('core.Dense', x, { units: 8, activation: 'relu' }, { name: 'hidden1' });
  const backbone: Graph = b.build({ logits: b.add('core.Dense', h, { units: 10 }) });
  const withExits: WeightedGraph = runPass<InsertExitsOptions>(runtime, 'early-exit.insert-exits', backbone, {
    at: ['hidden1'],
    head: 'linear',
    classes: 10,
  });
  const model: Model = createModel(runtime, withExits.graph, { seed: 1 });
  const digits: Digits = await loadDigits();
  const options: SeededOptions = { seed: 1 };
  // The app's tf.Tensor is the type dynn's declarations use: one tfjs-core.
  const input: tf.Tensor = seededNormal([2, 64], options);
  const result: RunResult = await model.run(input, {
    options: exitRunOptions({ criterion: 'maxProb', thresholds: 0.9 }),
  });
  const logits: tf.Tensor | undefined = result.outputs.logits;
  try {
    throw new DynnError('INVALID_INPUT', 'example');
  } catch (error) {
    if (isDynnError(error, 'INVALID_INPUT')) return error.code.length + digits.count;
  }
  return logits?.shape[0] ?? 0;
}

/** A nested CNN trained for two widths, one sub-network run and exported to a plain model. */
export async function nested(images: tf.Tensor4D, labels: tf.Tensor1D): Promise<Model> {
  const runtime = createRuntime({ plugins: [sortedNet()] });
  const model = createModel(runtime, residualCnnGraph(runtime, { size: 8, widths: [8, 16], blocks: 1 }));
  const nestedModel: Model = await nestModel(model, { multiple: 2, sort: 'none' });
  const nesting: Nesting = describeNesting(nestedModel.graph);
  const windows = sortedWindows({ widths: [0.5, 1], depths: [0, nesting.stages.length] });
  const trainer = new Trainer(nestedModel, { loss: sortedObjective({ temperature: 2 }) });
  await trainer.stepWindows(windows({ x: images, y: labels }, 0));
  trainer.dispose();
  await fitSorted(nestedModel, { x: images, y: labels }, { epochs: 1, sorted: { widths: [0.5, 1] } });
  const sub: SubNetwork = { width: 0.5, depth: 0 };
  const calibrated: Model = await calibrateBatchNorm(nestedModel, [sub], { x: images });
  const result: RunResult = await calibrated.run(images, { options: subNetworkOptions(sub), report: true });
  const flops: number = result.report?.flops ?? 0;
  const options: ExportOptions = { ...sub, foldBatchNorm: flops > 0 };
  const exported: WeightedGraph = runPass<ExportOptions>(runtime, 'sorted-net.export', calibrated, options);
  for (const m of [model, nestedModel, calibrated]) m.dispose();
  // A runtime without the sorted-net plugin loads the export: it holds core ops only.
  return createModel(createRuntime(), exported.graph, { weights: exported.weights });
}

/** A top-2 MoE layer on 64 features, run with a capacity and the routing read from the report. */
export async function experts(x: tf.Tensor2D): Promise<{ load: number[]; routing: Routing }> {
  const runtime = createRuntime({ plugins: [moeRouter()] });
  const b = new GraphBuilder(runtime);
  const router: RouterKind = 'gshard';
  const layer: MoeLayerOptions = { experts: 4, expert: { hidden: 16 }, router, k: 2, balanceLoss: 0.01 };
  const y = addMoeLayer(b, runtime, b.input('x', 'float32', ['batch', 64]), { ...layer, name: 'moe' });
  const model: Model = createModel(runtime, b.build({ y }));
  const options: MoeRunOptions = { capacityFactor: 1, recordAssignment: true };
  const result: RunResult = await model.run(x, { options: moeOptions(options) });
  const load = result.report?.nodes.find((n) => n.name === 'moe')?.stats.load as number[];
  const routing: Routing = routeTokens(Float32Array.of(0.7, 0.3, 0.2, 0.8), 2, {
    router: 'top-k',
    k: 1,
    capacityFactor: 0,
    dropPolicy: 'position',
    training: false,
    sinkhornIterations: 8,
  });
  model.dispose();
  return { load, routing };
}

/** A causal sliding window and routing heads on `[batch, time, 32]` features, decoded in a session. */
export async function sparse(x: tf.Tensor3D): Promise<{ plan: BlockPlan; keptTiles: number }> {
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const b = new GraphBuilder(runtime);
  const pattern: Pattern = {
    type: 'and',
    of: [{ type: 'causal' }, { type: 'window', before: 63, after: 0 }],
  };
  const routing: RoutingAttrs = {
    heads: 1,
    clusters: 4,
    window: 32,
    causal: true,
    decay: 0.999,
    commitment: 0,
  };
  const layer: SparseAttentionOptions = {
    numHeads: 4,
    keyDim: 8,
    pattern,
    routing,
    scoreMods: [{ type: 'alibi' }],
  };
  const y = addSparseAttention(b, b.input('x', 'float32', ['batch', 'time', 32]), {
    ...layer,
    name: 'attention',
  });
  const model: Model = createModel(runtime, b.build({ y }));
  const session = model.session();
  const result: RunResult = await session.run(x);
  const keptTiles = result.report?.nodes.find((n) => n.name === 'attention')?.stats.keptTiles as number;
  session.dispose();
  model.dispose();
  return { plan: planBlocks({ pattern, blockSize: 32, queries: 256, keys: 256 }), keptTiles };
}
