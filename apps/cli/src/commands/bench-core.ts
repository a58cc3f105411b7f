import { createModel, createRuntime, type Graph, type Model, Trainer, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { DEMO_CNN_FILTERS, demoCnnGraph, mlpGraph } from '../demo-models.js';
import { markdownTable } from '../report-files.js';
import { type TimingOptions, timeMedian, timeSideBySide } from '../timing.js';

/** One measured case. `tfjs_ms` is null (and `tfjs_error` set) when tfjs-layers cannot run it. */
export interface BenchCoreRow {
  model: string;
  case: string;
  dynn_ms: number;
  tfjs_ms: number | null;
  ratio: number | null;
  tfjs_error: string | null;
}

/** The fields `dynn bench core --json` adds to the bench envelope. */
export interface BenchCoreResult {
  results: BenchCoreRow[];
}

/** The same architecture as a tfjs-layers model, with the dynn model's weights copied in. */
function layersTwin(name: 'mlp' | 'cnn', model: Model): tfl.Sequential {
  const twin = tfl.sequential();
  if (name === 'mlp') {
    twin.add(tfl.layers.dense({ units: 512, activation: 'relu', inputShape: [784] }));
    twin.add(tfl.layers.dense({ units: 512, activation: 'relu' }));
  } else {
    for (const [i, filters] of DEMO_CNN_FILTERS.entries()) {
      twin.add(
        tfl.layers.conv2d({
          filters,
          kernelSize: 3,
          padding: 'same',
          activation: 'relu',
          ...(i === 0 ? { inputShape: [28, 28, 1] } : {}),
        }),
      );
      twin.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
    }
    twin.add(tfl.layers.flatten());
  }
  twin.add(tfl.layers.dense({ units: 10 }));
  // dynn stores kernel then bias per node, in node order: the same order as tfjs-layers' weights.
  twin.setWeights([...model.params.values()]);
  twin.compile({
    optimizer: tf.train.adam(1e-3),
    // The same objective as dynn's: softmax cross-entropy on logits (targets one-hot for tfjs-layers).
    loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred),
  });
  return twin;
}

async function readBack(t: tf.Tensor | tf.Tensor[]): Promise<void> {
  const list = Array.isArray(t) ? t : [t];
  for (const item of list) {
    await item.data();
    item.dispose();
  }
}

/**
 * Measures the MLP (784-512-512-10) and the demo CNN built in dynn and in tfjs-layers, side by
 * side in one process on the active backend: inference at batch 1 and 256 and one training step
 * at batch 64 (Adam). Reports medians after warm-up and the dynn / tfjs-layers ratio.
 */
export async function runBenchCore(
  timing: TimingOptions,
  onProgress: (label: string) => void = () => {},
): Promise<BenchCoreResult> {
  await useBackend('wasm');
  const runtime = createRuntime();
  const rows: BenchCoreRow[] = [];
  const cases: Array<{ name: 'mlp' | 'cnn'; label: string; graph: Graph; shape: number[] }> = [
    { name: 'mlp', label: 'MLP 784-512-512-10', graph: mlpGraph(runtime), shape: [784] },
    {
      name: 'cnn',
      label: `demo CNN (conv ${DEMO_CNN_FILTERS.join('-')})`,
      graph: demoCnnGraph(runtime),
      shape: [28, 28, 1],
    },
  ];
  for (const { name, label, graph, shape } of cases) {
    const model = createModel(runtime, graph, { seed: 1 });
    const twin = layersTwin(name, model);
    const trainer = new Trainer(model, { optimizer: tf.train.adam(1e-3) });
    for (const batch of [1, 256]) {
      onProgress(`${label}: inference, batch ${batch}`);
      const x = tf.randomUniform([batch, ...shape], 0, 1, 'float32', 7);
      const [dynn, tfjs] = (await timeSideBySide(
        [async () => readBack(await model.predict(x)), async () => readBack(twin.predict(x) as tf.Tensor)],
        { ...timing, minTotalMs: 2000 },
      )) as [number, number];
      rows.push({
        model: label,
        case: `inference, batch ${batch}`,
        dynn_ms: dynn,
        tfjs_ms: tfjs,
        ratio: dynn / tfjs,
        tfjs_error: null,
      });
      x.dispose();
    }
    onProgress(`${label}: training step, batch 64`);
    const x = tf.randomUniform([64, ...shape], 0, 1, 'float32', 8);
    const y = tf.tensor1d(
      Int32Array.from({ length: 64 }, (_, i) => i % 10),
      'int32',
    );
    const oneHot = tf.oneHot(y, 10);
    const dynnStep = async () => {
      await trainer.step(x, y);
    };
    const tfjsStep = async () => {
      await twin.trainOnBatch(x, oneHot);
    };
    let dynn: number;
    let tfjs: number | null = null;
    let error: string | null = null;
    try {
      await tfjsStep();
      [dynn, tfjs] = (await timeSideBySide([dynnStep, tfjsStep], timing)) as [number, number];
    } catch (caught) {
      // tfjs-layers cannot train this model here: time dynn alone and report why.
      error = (caught as Error).message.split('\n')[0]!;
      dynn = await timeMedian(dynnStep, timing);
    }
    rows.push({
      model: label,
      case: 'training step, batch 64',
      dynn_ms: dynn,
      tfjs_ms: tfjs,
      ratio: tfjs === null ? null : dynn / tfjs,
      tfjs_error: error,
    });
    tf.dispose([x, y, oneHot]);
    trainer.dispose();
    twin.dispose();
    model.dispose();
  }
  return { results: rows };
}

/** The results as the markdown table docs/benchmarks.md shows. */
export function benchCoreMarkdown(result: BenchCoreResult, head: BenchHead): string {
  const ms = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  return [
    `${measuredOn(head)}; medians after warm-up.`,
    '',
    markdownTable(
      ['model', 'case', 'dynn (ms)', 'tfjs-layers (ms)', 'dynn / tfjs-layers'],
      result.results.map((r) => [
        r.model,
        r.case,
        ms(r.dynn_ms),
        r.tfjs_ms === null ? `fails: \`${r.tfjs_error}\`` : ms(r.tfjs_ms),
        r.ratio === null ? 'n/a' : r.ratio.toFixed(2),
      ]),
    ),
  ].join('\n');
}
