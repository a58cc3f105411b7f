import { join, resolve } from 'node:path';
import { createRuntime, importLayersModel, saveModel } from '@dynn/core';

/** Converts a tfjs-layers / Keras model.json (+ weights) into a dynn model folder. */
export async function convert(
  source: string,
  outDir: string,
): Promise<{ file: string; nodes: number; params: number }> {
  const model = await importLayersModel(createRuntime(), resolve(source));
  try {
    await saveModel(model, resolve(outDir));
    return {
      file: join(resolve(outDir), 'model.json'),
      nodes: model.graph.nodes.length,
      params: model.paramCount,
    };
  } finally {
    model.dispose();
  }
}
