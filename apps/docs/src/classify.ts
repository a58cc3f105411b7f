import type { ComputeReport, Model, RunOptions } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** What {@link classifyTwice} measured. */
export interface Classification {
  /** The output the predictions are read from (the graph's first). */
  output: string;
  /** Predicted class per image (the arg-max of the output), in input order. */
  predictions: Int32Array;
  /** The compute report of the timed run. */
  report: ComputeReport;
  /** Milliseconds of the first run: on WebGL and WebGPU it includes compiling the GPU programs. */
  firstMs: number;
  /** Milliseconds of the second, identical run: the steady-state time. */
  ms: number;
}

async function classifyOnce(
  model: Model,
  images: tf.Tensor,
  output: string,
  options: RunOptions | undefined,
): Promise<{ predictions: Int32Array; report: ComputeReport; ms: number }> {
  const started = performance.now();
  const { outputs, report } = await model.run(images, {
    outputs: [output],
    report: true,
    ...(options === undefined ? {} : { options }),
  });
  const predicted = tf.argMax(outputs[output]!, -1);
  try {
    // The time includes reading the predictions back: GPU work is only done once they arrive.
    const predictions = Int32Array.from(await predicted.data());
    return { predictions, report: report!, ms: performance.now() - started };
  } finally {
    tf.dispose([predicted, ...Object.values(outputs)]);
  }
}

/**
 * Classifies `images` with `model` twice with the same run `options` and reports the second run:
 * its predictions, compute report and time, next to the first run's time (GPU program
 * compilation and other warm-up land there).
 */
export async function classifyTwice(
  model: Model,
  images: tf.Tensor,
  options?: RunOptions,
): Promise<Classification> {
  const output = model.graph.outputs[0]!.name;
  const first = await classifyOnce(model, images, output, options);
  const second = await classifyOnce(model, images, output, options);
  return { output, predictions: second.predictions, report: second.report, firstMs: first.ms, ms: second.ms };
}

/** How many predictions equal their labels. */
export function correctCount(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  let correct = 0;
  for (let i = 0; i < predictions.length; i++) if (predictions[i] === labels[i]) correct++;
  return correct;
}
