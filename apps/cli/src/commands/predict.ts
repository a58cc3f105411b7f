import { readFile } from 'node:fs/promises';
import { type BackendName, DynnError, loadModel, type Runtime, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** What `dynn predict --json` prints: each output's shape and nested values. */
export type Prediction = Record<string, { shape: number[]; values: unknown }>;

function shapeOf(value: unknown, file: string): number[] {
  const shape: number[] = [];
  let level: unknown = value;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  if (typeof level !== 'number') {
    throw new DynnError('INVALID_INPUT', `${file}: the input must be a (nested) JSON array of numbers.`, {
      file,
    });
  }
  return shape;
}

/**
 * Runs a dynn model on a JSON input: a nested array (one graph input) or an object of nested
 * arrays by input name. Int32 graph inputs get integer tensors.
 */
export async function predict(
  runtime: Runtime,
  modelFile: string,
  inputFile: string,
  backend: BackendName,
): Promise<Prediction> {
  await useBackend(backend);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(inputFile, 'utf8'));
  } catch (error) {
    throw new DynnError(
      'INVALID_INPUT',
      `${inputFile}: cannot read JSON input (${(error as Error).message}).`,
      {
        file: inputFile,
      },
    );
  }
  const model = await loadModel(runtime, modelFile);
  const feeds: Record<string, tf.Tensor> = {};
  try {
    const byName =
      Array.isArray(parsed) && model.graph.inputs.length === 1
        ? { [model.graph.inputs[0]!.name]: parsed }
        : parsed;
    if (byName === null || typeof byName !== 'object' || Array.isArray(byName)) {
      throw new DynnError('INVALID_INPUT', `${inputFile}: give an object of arrays keyed by input name.`, {
        file: inputFile,
      });
    }
    for (const info of model.graph.inputs) {
      const value = (byName as Record<string, unknown>)[info.name];
      if (value === undefined) {
        throw new DynnError('INVALID_INPUT', `${inputFile}: no value for input '${info.name}'.`, {
          file: inputFile,
        });
      }
      const shape = shapeOf(value, inputFile);
      feeds[info.name] = tf.tensor(
        (value as number[]).flat(Number.POSITIVE_INFINITY) as number[],
        shape,
        info.dtype,
      );
    }
    const { outputs } = await model.run(feeds, { report: false });
    const result: Prediction = {};
    for (const [name, t] of Object.entries(outputs)) {
      result[name] = { shape: t.shape, values: await t.array() };
      t.dispose();
    }
    return result;
  } finally {
    tf.dispose(Object.values(feeds));
    model.dispose();
  }
}
