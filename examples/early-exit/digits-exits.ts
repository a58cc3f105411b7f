// Early exits end to end on the UCI digits (8x8 images, 1,797 of them): insert exits into an MLP,
// train every exit with the final classifier, calibrate a threshold on validation data, then run
// the network dynamically and read from the compute report what it saved. docs/early-exit.md
// walks through this file; CI runs `main()`.
import {
  type BackendName,
  createModel,
  createRng,
  createRuntime,
  fit,
  GraphBuilder,
  runPass,
  shuffledIndices,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import {
  earlyExit,
  multiExitObjective,
  pickOperatingPoint,
  runOptionsFor,
  staticModel,
  sweepExits,
} from '@dynn/early-exit';
import * as tf from '@tensorflow/tfjs-core';

/** What the example measured on its test digits. */
export interface DigitsExitsResult {
  /** Accuracy of the network without exits. */
  fullAccuracy: number;
  /** Accuracy of the dynamic network at the calibrated threshold. */
  dynamicAccuracy: number;
  /** FLOPs executed per digit without exits, from the compute report. */
  fullFlops: number;
  /** FLOPs executed per digit by the dynamic network, from the compute report. */
  dynamicFlops: number;
  /** Test digits served by each exit, then by the final classifier. */
  exitHistogram: number[];
}

async function accuracyOf(logits: tf.Tensor, labels: tf.Tensor): Promise<number> {
  const predicted = tf.argMax(logits, -1);
  const [p, y] = [await predicted.data(), await labels.data()];
  predicted.dispose();
  return p.filter((v, i) => v === y[i]).length / p.length;
}

/** Trains a 64-32-64-128-10 MLP with an exit after every hidden layer and runs it dynamically. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<DigitsExitsResult> {
  await useBackend(backend);
  const digits = await loadDigits();
  // A seeded shuffle, then 60% training, 20% validation (to calibrate the threshold), 20% test.
  const order = shuffledIndices(digits.count, createRng(7));
  const split = (from: number, to: number) => {
    const { features, labels } = digits.toTensors(order.subarray(from, to));
    return { x: features, y: labels };
  };
  const [a, b] = [Math.round(digits.count * 0.6), Math.round(digits.count * 0.8)];
  const [train, validation, test] = [split(0, a), split(a, b), split(b, digits.count)];

  // The backbone: a plain MLP; the pass puts an exit (a dense layer to 10 logits) after every hidden layer.
  const runtime = createRuntime({ plugins: [earlyExit()] });
  const builder = new GraphBuilder(runtime);
  let h = builder.input('pixels', 'float32', ['batch', 64]);
  for (const [name, units] of [
    ['hidden1', 32],
    ['hidden2', 64],
    ['hidden3', 128],
  ] as const) {
    h = builder.add('core.Dense', h, { units, activation: 'relu' }, { name });
  }
  const backbone = builder.build({
    logits: builder.add('core.Dense', h, { units: 10 }, { name: 'classifier' }),
  });
  const { graph } = runPass(runtime, 'early-exit.insert-exits', backbone, {
    at: ['hidden1', 'hidden2', 'hidden3'],
    head: 'linear',
    classes: 10,
  });
  const model = createModel(runtime, graph, { seed: 1 });

  // Joint training: every exit's cross-entropy plus the final one's, the final output distilled into the exits.
  const optimizer = tf.train.adam(3e-3);
  await fit(model, train, {
    epochs: 12,
    batchSize: 32,
    optimizer,
    loss: multiExitObjective({ graph, distillation: { temperature: 2, alpha: 0.5 } }),
  });
  optimizer.dispose();

  // Calibration: one run per validation batch, every threshold simulated from it.
  const sweep = await sweepExits(model, validation, {
    criterion: 'maxProb',
    thresholds: [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999],
  });
  const point = pickOperatingPoint(sweep, { maxAccuracyDrop: 0.005 });

  // The baseline is the same network without exits; the dynamic run is the multi-exit model with a run option.
  const full = staticModel(model);
  const fullRun = await full.run(test.x);
  const dynamicRun = await model.run(test.x, { outputs: ['logits'], options: runOptionsFor(sweep, point) });
  const rows = test.x.shape[0];
  const served = dynamicRun.report!.servedBy.logits!;
  const result: DigitsExitsResult = {
    fullAccuracy: await accuracyOf(fullRun.outputs.logits!, test.y),
    dynamicAccuracy: await accuracyOf(dynamicRun.outputs.logits!, test.y),
    fullFlops: fullRun.report!.flops / rows,
    dynamicFlops: dynamicRun.report!.flops / rows,
    exitHistogram: [
      ...sweep.exits.map((exit) => served.filter((by) => by === exit).length),
      served.filter((by) => !sweep.exits.includes(by)).length,
    ],
  };
  log(`exits: ${sweep.exits.join(', ')}; threshold: max softmax >= ${point.threshold}`);
  log(
    `without exits: ${(result.fullAccuracy * 100).toFixed(1)}% at ${(result.fullFlops / 1e3).toFixed(1)} kFLOPs per digit`,
  );
  log(
    `with exits:    ${(result.dynamicAccuracy * 100).toFixed(1)}% at ${(result.dynamicFlops / 1e3).toFixed(1)} kFLOPs per digit ` +
      `(${((1 - result.dynamicFlops / result.fullFlops) * 100).toFixed(0)}% of the FLOPs saved; served by exit 1/2/3/final: ${result.exitHistogram.join('/')})`,
  );
  tf.dispose([...Object.values(fullRun.outputs), ...Object.values(dynamicRun.outputs)]);
  tf.dispose([train.x, train.y, validation.x, validation.y, test.x, test.y]);
  full.dispose();
  model.dispose();
  return result;
}
