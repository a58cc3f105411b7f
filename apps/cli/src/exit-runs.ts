import type { Model, RunOptions } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** Max-softmax thresholds the calibrations of `dynn demo` and `dynn bench early-exit` sweep. */
export const EARLY_EXIT_THRESHOLDS = [
  0.5, 0.55, 0.6, 0.65, 0.7, 0.725, 0.75, 0.775, 0.8, 0.825, 0.85, 0.875, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99,
  0.995, 0.999,
] as const;

/**
 * Self-distillation of the demo's and the bench's exits: each exit also learns the final
 * classifier's answers softened at temperature 3, half the weight of the labels.
 */
export const EXIT_DISTILLATION = { temperature: 3, alpha: 0.5 } as const;

/**
 * Accuracy the demo's and the bench's operating points may lose on the validation images: 0.3 pp,
 * a margin under the 0.5 pp aimed for on the test images, as a bound picked on 5,000 images
 * transfers with an error of a few tenths of a point.
 */
export const VALIDATION_MAX_DROP = 0.003;

/** Rows per run when measuring and timing over a test set. */
export const MEASURE_BATCH = 256;

/** What {@link measureExits} counts over a labelled image set. */
export interface ExitMeasurement {
  /** Fraction of images classified right. */
  accuracy: number;
  /** FLOPs the compute reports say were executed, over all images. */
  flops: number;
  /** Images served by each exit, in exit order, then by the final classifier. */
  histogram: number[];
}

/**
 * Runs `model` over a labelled image set in batches of {@link MEASURE_BATCH}, with `options` (or
 * none), and counts accuracy, executed FLOPs and which exit served each image (from the compute
 * reports: measured, not estimated).
 */
export async function measureExits(
  model: Model,
  data: { x: tf.Tensor; y: tf.Tensor },
  options: RunOptions | undefined,
  exitNodes: readonly string[],
): Promise<ExitMeasurement> {
  const count = data.x.shape[0]!;
  const labels = await data.y.data();
  const histogram = new Array<number>(exitNodes.length + 1).fill(0);
  let correct = 0;
  let flops = 0;
  for (let start = 0; start < count; start += MEASURE_BATCH) {
    const rows = Math.min(MEASURE_BATCH, count - start);
    const x = tf.slice(data.x, start, rows);
    const { outputs, report } = await model.run(x, {
      outputs: ['logits'],
      report: true,
      ...(options === undefined ? {} : { options }),
    });
    const predicted = tf.argMax(outputs.logits!, -1);
    const p = await predicted.data();
    for (let i = 0; i < rows; i++) if (p[i] === labels[start + i]) correct++;
    flops += report!.flops;
    for (const node of report!.servedBy.logits ?? []) {
      const k = exitNodes.indexOf(node);
      histogram[k < 0 ? exitNodes.length : k]! += 1;
    }
    tf.dispose([x, predicted, ...Object.values(outputs)]);
  }
  return { accuracy: correct / count, flops, histogram };
}

/** Splits the first `count` rows of `x` into batches of `size` rows (the caller disposes them). */
export function batchesOf(x: tf.Tensor, count: number, size: number): tf.Tensor[] {
  return Array.from({ length: Math.ceil(count / size) }, (_, i) =>
    tf.slice(x, i * size, Math.min(size, count - i * size)),
  );
}

/**
 * A timing body: runs `model` on every input with `options`, reading each result back, as an
 * application would (by default with the compute report on, as the exits need it to say who
 * served each row; `report: false` times the run alone).
 */
export function runEach(
  model: Model,
  options: RunOptions | undefined,
  inputs: readonly tf.Tensor[],
  report = true,
): () => Promise<void> {
  return async () => {
    for (const x of inputs) {
      const { outputs } = await model.run(x, {
        outputs: ['logits'],
        report,
        ...(options === undefined ? {} : { options }),
      });
      await outputs.logits!.data();
      tf.dispose(Object.values(outputs));
    }
  };
}
