import * as tf from '@tensorflow/tfjs-core';
import { ensureBackend } from '../backend.js';
import type { Graph } from '../ir.js';
import { createModel, type Model } from '../model.js';
import type { Runtime } from '../runtime.js';
import { validateGraph } from '../validate.js';
import { checkGraphSchema } from './graph-schema.js';
import type { FetchFunction } from './http-reader.js';
import { type LoadLimits, resolveLimits } from './limits.js';
import { checkWeightSpecs, checkWeightsMatchGraph, type WeightEntry, weightSpecsOf } from './manifest.js';
import { modelFileError, namingFile } from './model-file-error.js';
import { checkFormat } from './model-json.js';
import { type ModelReader, readModelJson, readShards } from './reader.js';
import { resolveLoadSource } from './resolve.js';
import { checkJsonTree } from './safe-json.js';

/** Options for {@link loadModel}. */
export interface LoadModelOptions {
  /** Size limits, each defaulting to {@link DEFAULT_LOAD_LIMITS}; raise them for large files you trust. */
  limits?: Partial<LoadLimits>;
  /** The `fetch` used for `http(s)://` URLs (default: the global one), e.g. to add headers. */
  fetch?: FetchFunction;
}

interface CheckedModel {
  graph: Graph;
  entries: WeightEntry[];
  data: tf.io.WeightData;
}

async function readThroughReader(
  runtime: Runtime,
  reader: ModelReader,
  limits: LoadLimits,
): Promise<CheckedModel> {
  const file = reader.url;
  const contents = await readModelJson(reader, limits);
  checkFormat(contents.json.format, file);
  const graph = checkGraphSchema(contents.modelTopology, file, limits);
  const entries = contents.groups.flatMap((g) => g.weights);
  checkWeightsMatchGraph(entries, graph, file);
  // Ops, op-set versions, attributes, shapes and tensors against the runtime.
  validateGraph(runtime, graph, file);
  // Everything in model.json checked out: only now read the shards, exactly as many bytes as it lists.
  return { graph, entries, data: await readShards(reader, contents.groups) };
}

async function readThroughHandler(
  runtime: Runtime,
  handler: tf.io.IOHandler,
  file: string,
  limits: LoadLimits,
): Promise<CheckedModel> {
  const artifacts: unknown = await handler.load!();
  if (artifacts === null || typeof artifacts !== 'object') {
    throw modelFileError(file, 'returned no model artifacts.');
  }
  const { format, modelTopology, weightSpecs, weightData } = artifacts as tf.io.ModelArtifacts;
  checkFormat(format, file);
  if (modelTopology instanceof ArrayBuffer) {
    throw modelFileError(file, 'holds a binary (GraphDef) topology, not a dynn graph.');
  }
  checkJsonTree(modelTopology, file, limits, 'modelTopology');
  checkJsonTree(weightSpecs ?? [], file, limits, 'weightSpecs');
  const graph = checkGraphSchema(modelTopology, file, limits);
  const entries = checkWeightSpecs(weightSpecs ?? [], file, limits);
  checkWeightsMatchGraph(entries, graph, file);
  const expected = entries.reduce((sum, e) => sum + e.byteLength, 0);
  const buffers = weightData === undefined ? [] : Array.isArray(weightData) ? weightData : [weightData];
  if (!buffers.every((b: unknown) => b instanceof ArrayBuffer)) {
    throw modelFileError(file, 'has weight data that is not ArrayBuffers.');
  }
  const found = buffers.reduce((sum, b) => sum + b.byteLength, 0);
  if (found !== expected) {
    throw modelFileError(
      file,
      `holds ${found} bytes of weight data, but its weight specs need ${expected}.`,
      'The weights are truncated or belong to another model: load the weight data saved with this model.json.',
    );
  }
  validateGraph(runtime, graph, file);
  return { graph, entries, data: buffers };
}

/**
 * Loads a model saved by {@link saveModel}: from a path or `file://` URL (Node), an `http(s)://`
 * URL, `indexeddb://` or `localstorage://` (browser), a {@link ModelReader} or any
 * tf.io.IOHandler. The file is checked before anything is allocated: safe JSON (size, nesting,
 * no `__proto__`-like keys), the graph's structure, the weights manifest against the graph, every
 * op and op-set version against `runtime`, shapes, and the shards' byte lengths, all within
 * `options.limits`. Any problem rejects with a typed {@link DynnError} (`MODEL_FILE`,
 * `UNKNOWN_OP`, `OP_VERSION`, `INVALID_GRAPH`...) that names the file. Creates no tensor unless
 * it resolves. When no backend was chosen, starts one first (`wasm` in Node; see
 * {@link ensureBackend}).
 *
 * @example
 * ```ts
 * const model = await loadModel(runtime, 'file://./models/mnist');
 * ```
 */
export async function loadModel(
  runtime: Runtime,
  source: string | tf.io.IOHandler | ModelReader,
  options: LoadModelOptions = {},
): Promise<Model> {
  const limits = resolveLimits(options.limits);
  const { label, reader, handler } = resolveLoadSource(source, options.fetch);
  let checked: CheckedModel;
  try {
    checked = reader
      ? await readThroughReader(runtime, reader, limits)
      : await readThroughHandler(runtime, handler, label, limits);
  } catch (error) {
    throw namingFile(error, label);
  }
  const { graph, entries, data } = checked;
  // The file checked out: start a backend if none was chosen (wasm in Node) before making tensors.
  await ensureBackend();
  // Quantized weights (uint8, uint16, float16; checked above) come back dequantized to float32.
  const tensors = tf.io.decodeWeights(data, weightSpecsOf(entries));
  try {
    return createModel(runtime, graph, { weights: new Map(Object.entries(tensors)) });
  } catch (error) {
    tf.dispose(Object.values(tensors));
    throw namingFile(error, label);
  }
}
