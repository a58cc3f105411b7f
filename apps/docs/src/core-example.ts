import { activeBackend, type ComputeReport, createRuntime, type Model, type Runtime } from '@dynn/core';
import { classifyTwice, correctCount } from './classify.js';
import { type FashionSample, sampleImages } from './fashion-sample.js';

/** The runtime the core example's model needs: the core ops only. */
export function coreExampleRuntime(): Runtime {
  return createRuntime();
}

/** What the core example shows. */
export interface CoreExampleResult {
  /** The backend tfjs reports in use. */
  backend: string;
  /** Images classified. */
  count: number;
  /** Predicted class per image. */
  predictions: Int32Array;
  /** Images classified right. */
  correct: number;
  accuracy: number;
  /** Trainable parameters of the model. */
  params: number;
  /** The compute report of the timed run: rows and FLOPs per node. */
  report: ComputeReport;
  /** Milliseconds of the first run (includes GPU program compilation on WebGL and WebGPU). */
  firstMs: number;
  /** Milliseconds of the second run. */
  ms: number;
}

/**
 * Classifies every image of `sample` with `model` in one batch, twice (see `classifyTwice`), on
 * the active backend, and gathers what the page shows. Leaves no tensor behind.
 */
export async function runCoreExample(model: Model, sample: FashionSample): Promise<CoreExampleResult> {
  const images = sampleImages(sample);
  try {
    const run = await classifyTwice(model, images);
    const correct = correctCount(run.predictions, sample.labels);
    return {
      backend: activeBackend(),
      count: sample.count,
      predictions: run.predictions,
      correct,
      accuracy: correct / sample.count,
      params: model.paramCount,
      report: run.report,
      firstMs: run.firstMs,
      ms: run.ms,
    };
  } finally {
    images.dispose();
  }
}
