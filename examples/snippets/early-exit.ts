// Early exits in brief, on the UCI digits: insert exits into an MLP, train them with the final
// classifier, run with an exit criterion, then calibrate the threshold. docs/early-exit.md and
// docs/packages/early-exit.md quote its regions; CI runs `main()` on wasm and cpu.
import {
  type BackendName,
  createModel,
  createRuntime,
  fit,
  GraphBuilder,
  runPass,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import {
  earlyExit,
  exitRunOptions,
  multiExitObjective,
  pickOperatingPoint,
  runOptionsFor,
  sweepExits,
} from '@dynn/early-exit';
import * as tf from '@tensorflow/tfjs-core';

/** What the example measured on its 297 test digits. */
export interface EarlyExitSnippetResult {
  /** FLOPs per digit with every row through every layer. */
  fullFlops: number;
  /** FLOPs per digit with `maxProb >= 0.9`. */
  fixedThresholdFlops: number;
  /** FLOPs per digit at the calibrated threshold. */
  calibratedFlops: number;
  /** Which node served each test digit at the calibrated threshold. */
  servedBy: string[];
}

/** Trains a 64-32-64-10 MLP with an exit after each hidden layer and runs it dynamically. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<EarlyExitSnippetResult> {
  await useBackend(backend);
  const { features, labels } = (await loadDigits()).toTensors();
  const [trainX, trainY] = [tf.slice(features, 0, 1200), tf.slice(labels, 0, 1200)];
  const [validationX, validationY] = [tf.slice(features, 1200, 300), tf.slice(labels, 1200, 300)];
  const [testX, testY] = [tf.slice(features, 1500), tf.slice(labels, 1500)];

  // #region insert
  const runtime = createRuntime({ plugins: [earlyExit()] });
  const b = new GraphBuilder(runtime);
  const pixels = b.input('pixels', 'float32', ['batch', 64]);
  const hidden1 = b.add('core.Dense', pixels, { units: 32, activation: 'relu' }, { name: 'hidden1' });
  const hidden2 = b.add('core.Dense', hidden1, { units: 64, activation: 'relu' }, { name: 'hidden2' });
  const backbone = b.build({ logits: b.add('core.Dense', hidden2, { units: 10 }, { name: 'classifier' }) });
  // A pass of the plugin: an exit (pooled features, then a dense layer to 10 logits) after each
  // hidden layer. The input graph stays as it was.
  const { graph } = runPass(runtime, 'early-exit.insert-exits', backbone, {
    at: ['hidden1', 'hidden2'],
    head: 'linear',
    classes: 10,
  });
  const model = createModel(runtime, graph, { seed: 1 });
  // #endregion insert

  // #region train
  const optimizer = tf.train.adam(0.005);
  await fit(
    model,
    { x: trainX, y: trainY },
    {
      epochs: 15,
      batchSize: 32,
      optimizer,
      // Every exit's cross-entropy plus the final one's; each exit also learns from the final output.
      loss: multiExitObjective({ graph, distillation: { temperature: 2, alpha: 0.5 } }),
    },
  );
  // #endregion train

  const full = await model.run(testX, { outputs: ['logits'] }); // no run option: no row leaves

  // #region run-options
  const { outputs, report } = await model.run(testX, {
    outputs: ['logits'],
    options: exitRunOptions({ criterion: 'maxProb', thresholds: 0.9 }),
    report: true,
  });
  // #endregion run-options

  // #region calibrate
  // One run per validation batch with the exits off; every threshold is then simulated in JS.
  const sweep = await sweepExits(
    model,
    { x: validationX, y: validationY },
    {
      criterion: 'maxProb',
      thresholds: [0.5, 0.7, 0.8, 0.9, 0.95, 0.99],
    },
  );
  const point = pickOperatingPoint(sweep, { maxAccuracyDrop: 0.005 }); // the cheapest losing <= 0.5 pp
  const calibrated = await model.run(testX, { outputs: ['logits'], options: runOptionsFor(sweep, point) });
  const servedBy = calibrated.report!.servedBy.logits!; // the node that answered each row
  const early = servedBy.filter((node) => node !== 'classifier').length;
  log(`max softmax >= ${point.threshold}: ${early} of ${servedBy.length} digits left at an exit`);
  // #endregion calibrate

  const rows = testX.shape[0];
  const result: EarlyExitSnippetResult = {
    fullFlops: full.report!.flops / rows,
    fixedThresholdFlops: report!.flops / rows,
    calibratedFlops: calibrated.report!.flops / rows,
    servedBy,
  };
  tf.dispose([
    ...Object.values(full.outputs),
    ...Object.values(outputs),
    ...Object.values(calibrated.outputs),
    features,
    labels,
    trainX,
    validationX,
    testX,
    trainY,
    validationY,
    testY,
  ]);
  optimizer.dispose();
  model.dispose();
  return result;
}
