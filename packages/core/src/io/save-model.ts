import * as tf from '@tensorflow/tfjs-core';
import { version } from '../../package.json';
import { DynnError } from '../errors.js';
import type { Model } from '../model.js';
import { checkGraphSchema } from './graph-schema.js';
import { UNBOUNDED_LIMITS } from './limits.js';
import { namingFile } from './model-file-error.js';
import { MODEL_FORMAT } from './model-json.js';
import {
  encodeQuantizedWeights,
  isQuantizationDType,
  QUANTIZATION_BYTES,
  type QuantizationDType,
} from './quantize.js';
import { resolveSaveTarget } from './resolve.js';
import { checkJsonTree } from './safe-json.js';

/** Options for {@link saveModel}. */
export interface SaveModelOptions {
  /** Most bytes per weight shard, for paths and `file://` URLs (default 4 MiB, the tfjs convention). */
  shardBytes?: number;
  /**
   * Stores float32 parameters and state quantized, as the tfjs converter does: `uint8` (1 byte
   * per value, affine: value = q * scale + min), `uint16` (2 bytes, affine) or `float16`
   * (2 bytes). int32 and bool tensors are stored as they are. {@link loadModel} (and tfjs)
   * dequantize to float32 on load: the file is smaller, the weights approximate (within half a
   * step of the affine scale; float16 keeps about 3 significant digits).
   */
  quantize?: QuantizationDType;
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

/** The weights of `model` (parameters, then state) in the tfjs binary format, quantized if asked. */
async function encodeModelWeights(
  model: Model,
  quantize: QuantizationDType | undefined,
  label: string,
): Promise<{ data: ArrayBuffer; specs: tf.io.WeightsManifestEntry[] }> {
  const tensors = [...model.params, ...model.state].map(([name, tensor]) => ({ name, tensor }));
  if (quantize === undefined) return tf.io.encodeWeights(tensors);
  const values = await Promise.all(
    tensors.map(async ({ name, tensor }) => ({
      name,
      shape: tensor.shape,
      dtype: tensor.dtype,
      values: await tensor.data(),
    })),
  );
  try {
    return encodeQuantizedWeights(values, quantize);
  } catch (error) {
    throw namingFile(error, label);
  }
}

/**
 * Saves `model` (graph, parameters, then state) as a tfjs model: a model.json with format
 * `dynn-graph` whose `modelTopology` is the graph, and its weights in the tfjs binary format.
 * `destination` is a path or `file://` URL (Node: model.json and `group1-shardNofM.bin` shards of
 * at most 4 MiB), `indexeddb://`, `localstorage://` or `downloads://` (browser), `http(s)://`
 * (a multipart POST, as tfjs sends it), or any tf.io.IOHandler. Loading the result gives the
 * same weights bit for bit. Creates no tensor. A save to a path that fails midway leaves the
 * model.json already there unchanged. With `options.quantize`, float32 weights are stored in 1
 * or 2 bytes each, in the tfjs converter's format, and load back approximately (dequantized to
 * float32); `INVALID_OPTION` names a weight that cannot be stored so (NaN, infinite, or beyond
 * the float16 range).
 *
 * @example
 * ```ts
 * await saveModel(model, 'file://./models/mnist');
 * await saveModel(model, 'indexeddb://mnist');
 * await saveModel(model, 'file://./models/mnist-small', { quantize: 'uint8' });
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
  const { quantize } = options;
  if (quantize !== undefined && !isQuantizationDType(quantize)) {
    throw new DynnError(
      'INVALID_OPTION',
      `quantize is ${JSON.stringify(quantize)}; use one of ${Object.keys(QUANTIZATION_BYTES).join(', ')}, or leave it out to store float32.`,
    );
  }
  const { label, handler } = resolveSaveTarget(destination, options.shardBytes);
  const modelTopology = graphAsJson(model, label) as object;
  const { data, specs } = await encodeModelWeights(model, quantize, label);
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
