import * as tf from '@tensorflow/tfjs-core';
import { version } from '../../package.json';
import { DynnError } from '../errors.js';
import type { Model } from '../model.js';
import { checkGraphSchema } from './graph-schema.js';
import { UNBOUNDED_LIMITS } from './limits.js';
import { MODEL_FORMAT } from './model-json.js';
import { resolveSaveTarget } from './resolve.js';
import { checkJsonTree } from './safe-json.js';

/** Options for {@link saveModel}. */
export interface SaveModelOptions {
  /** Most bytes per weight shard, for paths and `file://` URLs (default 4 MiB, the tfjs convention). */
  shardBytes?: number;
}

/** What every model file records as its writer. */
export const GENERATED_BY = `dynn ${version}`;

const SAVE_FIX =
  'A model file holds JSON data only: give every attribute a finite number, string, boolean, null, array or object.';

/** The graph as the JSON data a file will hold, checked so that loading will accept it. */
function graphAsJson(model: Model, file: string): unknown {
  let text: string;
  try {
    text = JSON.stringify(model.graph, (key, value: unknown) => {
      if (typeof value === 'number' && !Number.isFinite(value)) throw new Error(`'${key}' is ${value}`);
      if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
        throw new Error(`'${key}' is a ${typeof value}`);
      }
      return value;
    });
  } catch (error) {
    throw new DynnError(
      'MODEL_FILE',
      `${file}: the graph cannot be saved: ${(error as Error).message}. ${SAVE_FIX}`,
      {
        file,
      },
    );
  }
  const json: unknown = JSON.parse(text);
  checkJsonTree(json, file, UNBOUNDED_LIMITS, 'graph', SAVE_FIX);
  return checkGraphSchema(json, file, UNBOUNDED_LIMITS, 'graph', SAVE_FIX);
}

/**
 * Saves `model` (graph, parameters, then state) as a tfjs model: a model.json with format
 * `dynn-graph` whose `modelTopology` is the graph, and its weights in the tfjs binary format.
 * `destination` is a path or `file://` URL (Node: model.json and `group1-shardNofM.bin` shards of
 * at most 4 MiB), `indexeddb://`, `localstorage://` or `downloads://` (browser), `http(s)://`
 * (a multipart POST, as tfjs sends it), or any tf.io.IOHandler. Loading the result gives the
 * same weights bit for bit. Creates no tensor. A save to a path that fails midway leaves the
 * model.json already there unchanged.
 *
 * @example
 * ```ts
 * await saveModel(model, 'file://./models/mnist');
 * await saveModel(model, 'indexeddb://mnist');
 * ```
 */
export async function saveModel(
  model: Model,
  destination: string | tf.io.IOHandler,
  options: SaveModelOptions = {},
): Promise<tf.io.SaveResult> {
  if (model.isDisposed) {
    throw new DynnError('INVALID_OPTION', 'This model was disposed; it has nothing left to save.');
  }
  const { label, handler } = resolveSaveTarget(destination, options.shardBytes);
  const modelTopology = graphAsJson(model, label) as object;
  const tensors = [...model.params, ...model.state].map(([name, tensor]) => ({ name, tensor }));
  const { data, specs } = await tf.io.encodeWeights(tensors);
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology,
    format: MODEL_FORMAT,
    generatedBy: GENERATED_BY,
    convertedBy: null,
    weightSpecs: specs,
    weightData: data,
  };
  let result: tf.io.SaveResult;
  try {
    result = await handler.save!(artifacts);
  } catch (error) {
    if (error instanceof DynnError) throw error;
    throw new DynnError(
      'MODEL_FILE',
      `${label}: the model could not be saved (${(error as Error).message}).`,
      { file: label },
    );
  }
  if (result.errors !== undefined && result.errors.length > 0) {
    throw new DynnError(
      'MODEL_FILE',
      `${label}: the model could not be saved (${result.errors.map(String).join('; ')}).`,
      {
        file: label,
      },
    );
  }
  return result;
}
