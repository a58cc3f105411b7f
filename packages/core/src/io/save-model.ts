import * as tf from '@tensorflow/tfjs-core';
import { version } from '../../package.json';
import { DynnError } from '../errors.js';
import type { Graph } from '../ir.js';
import { Model } from '../model.js';
import { sameDims } from '../ops/basic/shape-helpers.js';
import type { WeightedGraph } from '../plugin.js';
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
function graphAsJson(graph: Graph, file: string): unknown {
  let text: string;
  try {
    text = JSON.stringify(graph, (key, value: unknown) => {
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
 * The tensors to save, parameters then state in the graph's order: a model's variables, or a
 * weighted graph's weights (each one the graph declares, with its declared shape).
 */
function tensorsToSave(source: Model | WeightedGraph, label: string): { name: string; tensor: tf.Tensor }[] {
  if (source instanceof Model)
    return [...source.params, ...source.state].map(([name, tensor]) => ({ name, tensor }));
  return [...source.graph.params, ...source.graph.state].map((info) => {
    const tensor = source.weights.get(info.name);
    const same =
      tensor !== undefined &&
      !tensor.isDisposed &&
      tensor.dtype === info.dtype &&
      sameDims(tensor.shape, info.shape);
    if (!same) {
      throw new DynnError(
        'MODEL_FILE',
        `${label}: weight '${info.name}' is ${tensor === undefined ? 'missing' : tensor.isDisposed ? 'disposed' : `${tensor.dtype}[${tensor.shape.join(', ')}]`} ` +
          `but the graph declares ${info.dtype}[${info.shape.join(', ')}]; give every parameter and state tensor its weight.`,
        { file: label },
      );
    }
    return { name: info.name, tensor };
  });
}

/** The weights (parameters, then state) in the tfjs binary format, quantized if asked. */
async function encodeModelWeights(
  tensors: readonly { name: string; tensor: tf.Tensor }[],
  quantize: QuantizationDType | undefined,
  label: string,
): Promise<{ data: ArrayBuffer; specs: tf.io.WeightsManifestEntry[] }> {
  if (quantize === undefined) return tf.io.encodeWeights([...tensors]);
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
 * Saves `model` (graph, parameters, then state), or a graph with its weights as a pass returns it
 * (`runPass`), as a tfjs model: a model.json with format
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
  model: Model | WeightedGraph,
  destination: string | tf.io.IOHandler,
  options: SaveModelOptions = {},
): Promise<tf.io.SaveResult> {
  if (model instanceof Model && model.isDisposed) {
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
  const modelTopology = graphAsJson(model.graph, label) as object;
  const { data, specs } = await encodeModelWeights(tensorsToSave(model, label), quantize, label);
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
