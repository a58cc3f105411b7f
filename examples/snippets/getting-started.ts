// Getting started: a classifier for the UCI digits, built, trained, run and measured with
// @dynn/core. docs/getting-started.md and docs/packages/core.md quote its regions; CI runs
// `main()` on wasm and cpu.
import {
  type BackendName,
  createModel,
  createRuntime,
  evaluate,
  fit,
  GraphBuilder,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

/** Trains a 64-32-10 MLP on 1,500 digits and measures it on the other 297. */
export async function main(backend: BackendName = 'wasm', log: (line: string) => void = console.log) {
  // #region backend
  await useBackend(backend); // 'wasm' in Node; 'webgpu', 'webgl' or 'wasm' in a browser
  // #endregion backend

  // #region data
  const digits = await loadDigits(); // 1,797 handwritten 8x8 digits, shipped inside @dynn/datasets
  const { features, labels } = digits.toTensors(); // [1797, 64] float32 in [0, 1], [1797] int32
  const [trainX, trainY] = [tf.slice(features, 0, 1500), tf.slice(labels, 0, 1500)]; // 1,500 to train on
  const [testX, testY] = [tf.slice(features, 1500), tf.slice(labels, 1500)]; // 297 to test on
  // #endregion data

  // #region graph
  const runtime = createRuntime(); // the core ops; plugins add more: createRuntime({ plugins: [...] })
  const b = new GraphBuilder(runtime);
  const pixels = b.input('pixels', 'float32', ['batch', 64]);
  const hidden = b.add('core.Dense', pixels, { units: 32, activation: 'relu' }, { name: 'hidden' });
  const logits = b.add('core.Dense', hidden, { units: 10 }, { name: 'classifier' });
  const graph = b.build({ logits }); // plain JSON data: no tensor in it
  // #endregion graph

  // #region train
  const model = createModel(runtime, graph, { seed: 1 }); // the weights, as tf.Variables
  const optimizer = tf.train.adam(0.01);
  await fit(model, { x: trainX, y: trainY }, { epochs: 15, batchSize: 32, optimizer });
  const { accuracy } = await evaluate(model, { x: testX, y: testY });
  // #endregion train

  // #region run
  const { outputs, report } = await model.run(testX); // async: GPU backends read back asynchronously
  const classes = tf.argMax(outputs.logits!, -1);
  const predicted = (await classes.array()) as number[];
  log(`test accuracy ${(accuracy! * 100).toFixed(1)}%; first predictions ${predicted.slice(0, 8).join(' ')}`);
  log(`${report!.flops} FLOPs for ${report!.batchSize} digits:`);
  for (const node of report!.nodes)
    log(`  ${node.name} (${node.op}): ${node.rows} rows, ${node.flops} FLOPs`);
  tf.dispose([classes, outputs.logits!]); // the caller owns every tensor a run returns
  // #endregion run

  tf.dispose([features, labels, trainX, testX, trainY, testY]);
  optimizer.dispose();
  model.dispose();
  return { accuracy: accuracy!, flops: report!.flops, predicted };
}
