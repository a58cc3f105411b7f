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
  useBackend,
  type WeightedGraph,
} from '@dynn/core';
import { type Digits, loadDigits } from '@dynn/datasets';
import { earlyExit, exitRunOptions, type InsertExitsOptions } from '@dynn/early-exit';
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
