import * as tf from '@tensorflow/tfjs-core';
import { ensureBackend } from '../backend.js';
import { DynnError } from '../errors.js';
import { fileHandler } from '../io/file-handler.js';
import { SchemaReader } from '../io/graph-schema.js';
import { resolveLimits } from '../io/limits.js';
import { checkQuantization } from '../io/manifest.js';
import { modelFileError } from '../io/model-file-error.js';
import { QUANTIZATION_BYTES } from '../io/quantize.js';
import type { Graph, TensorInfo } from '../ir.js';
import { createModel, type Model } from '../model.js';
import type { Runtime } from '../runtime.js';
import { convertLayersTopology, type LayersConversion } from './convert.js';
import { isObject } from './keras-json.js';

/** Where {@link importLayersModel} reads a model: a URL / path, a tfjs IO handler, or loaded artifacts. */
export type LayersModelSource = string | tf.io.IOHandler | tf.io.ModelArtifacts;

/** Options of {@link importLayersModel}. */
export interface ImportLayersModelOptions {
  /** Passed to the tfjs IO handler chosen for a string source (`requestInit`, `onProgress`, `fetchFunc`...). */
  loadOptions?: tf.io.LoadOptions;
}

/** How errors name the source: its URL or path, or a phrase for handlers and artifacts. */
function sourceLabel(source: LayersModelSource): string {
  return typeof source === 'string' ? source : 'the given model artifacts';
}

/** The error context of a source: the file, when it is one. */
function fileContext(source: LayersModelSource): { file?: string } {
  return typeof source === 'string' ? { file: source } : {};
}

const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * The tfjs IO handler for a URL, as tfjs-layers' `loadLayersModel` picks it; in Node, a plain
 * path or `file://` URL that no registered handler claims is read from disk.
 */
function handlerFor(url: string, options: tf.io.LoadOptions | undefined): tf.io.IOHandler {
  const handlers = tf.io.getLoadHandlers(url, options);
  if (handlers.length > 1) {
    throw new DynnError(
      'MODEL_FILE',
      `${handlers.length} tfjs IO handlers claim '${url}'; pass the one to use.`,
      {
        file: url,
      },
    );
  }
  if (handlers[0] !== undefined) return handlers[0];
  const isFile = url.startsWith('file://') || !URL_SCHEME.test(url);
  if (isFile && tf.env().getBool('IS_NODE')) return fileHandler(url);
  // Like tfjs-layers: any other URL is read over HTTP (a relative URL in a browser).
  return tf.io.http(url, options);
}

/** True for a tfjs IO handler (it loads on demand) rather than loaded artifacts. */
function isHandler(source: tf.io.IOHandler | tf.io.ModelArtifacts): source is tf.io.IOHandler {
  return 'load' in source && typeof source.load === 'function';
}

async function loadArtifacts(
  source: LayersModelSource,
  options: ImportLayersModelOptions,
): Promise<tf.io.ModelArtifacts> {
  if (typeof source !== 'string' && !isHandler(source)) {
    if (isObject(source) && 'modelTopology' in source) return source;
    throw new DynnError(
      'INVALID_INPUT',
      'importLayersModel needs a URL, a tfjs IO handler with a load() method, or model artifacts with a modelTopology.',
    );
  }
  const handler = typeof source === 'string' ? handlerFor(source, options.loadOptions) : source;
  try {
    return await handler.load!();
  } catch (error) {
    if (error instanceof DynnError) throw error;
    throw new DynnError(
      'MODEL_FILE',
      `Cannot load ${sourceLabel(source)}: ${(error as Error).message}`,
      fileContext(source),
    );
  }
}

/** Bytes per element of the tfjs dtypes with a fixed size. */
const TFJS_DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, complex64: 8 };

/**
 * Checks untrusted weight specs before tfjs decodes by them: names, shapes within the load limits,
 * every `quantization` (a known dtype, finite `min` and `scale`, on a float32 weight), and, when
 * `dataBytes` is known, that the weight data holds all the bytes the specs need. Returns the
 * specs with only the quantization fields tfjs reads.
 */
function checkSpecs(
  specs: unknown,
  source: LayersModelSource,
  dataBytes: number | undefined,
): tf.io.WeightsManifestEntry[] {
  const label = sourceLabel(source);
  try {
    const r = new SchemaReader(label, resolveLimits());
    let total: number | undefined = 0;
    const checked = r.list(specs, 'weightSpecs').map((value, i): tf.io.WeightsManifestEntry => {
      const path = `weightSpecs[${i}]`;
      const spec = r.object(value, path) as unknown as tf.io.WeightsManifestEntry;
      r.name(spec.name, `${path}.name`);
      const elements = r.elementCount(r.shape(spec.shape, `${path}.shape`, false), `${path}.shape`);
      if (spec.quantization === undefined) {
        const bytes = TFJS_DTYPE_BYTES[spec.dtype];
        // Strings have no fixed size: tfjs reads their lengths from the data itself.
        total = bytes === undefined || total === undefined ? undefined : total + elements * bytes;
        return spec;
      }
      const quantization = checkQuantization(r, spec.quantization, spec.dtype, `${path}.quantization`);
      if (total !== undefined) total += elements * QUANTIZATION_BYTES[quantization.dtype];
      return { ...spec, quantization };
    });
    // Like tfjs-layers, bytes past the last weight are ignored; too few would make tfjs read past the end.
    if (total !== undefined && dataBytes !== undefined && total > dataBytes) {
      throw modelFileError(
        label,
        `holds ${dataBytes} bytes of weight data, but its weight specs need ${total}.`,
        'The weights are truncated or belong to another model.json: copy model.json together with all of its weight files, unchanged.',
      );
    }
    return checked;
  } catch (error) {
    // Only a URL is a file to name in the error context.
    if (error instanceof DynnError && typeof source !== 'string') {
      throw new DynnError(error.code, error.message, fileContext(source));
    }
    throw error;
  }
}

/** Bytes of tfjs weight data: one ArrayBuffer or several. */
function byteLengthOf(data: tf.io.WeightData, source: LayersModelSource): number {
  const buffers: unknown[] = Array.isArray(data) ? data : [data];
  if (!buffers.every((buffer) => buffer instanceof ArrayBuffer)) {
    throw new DynnError(
      'MODEL_FILE',
      `${sourceLabel(source)} has weight data that is not ArrayBuffers; an IO handler must load weightData as ArrayBuffer(s).`,
      fileContext(source),
    );
  }
  return (buffers as ArrayBuffer[]).reduce((sum, buffer) => sum + buffer.byteLength, 0);
}

async function decodeArtifactsWeights(
  artifacts: tf.io.ModelArtifacts,
  source: LayersModelSource,
): Promise<tf.NamedTensorMap> {
  const data = artifacts.weightData;
  // Quantized weights (uint8, uint16, float16) are dequantized to float32 by tfjs, once checked here.
  const specs = checkSpecs(
    artifacts.weightSpecs ?? [],
    source,
    data === undefined ? undefined : byteLengthOf(data, source),
  );
  if (data !== undefined) return tf.io.decodeWeights(data, specs);
  if (artifacts.getWeightStream !== undefined) {
    return tf.io.decodeWeightsStream(artifacts.getWeightStream(), specs);
  }
  if (specs.length > 0) {
    throw new DynnError(
      'DATA_MISSING',
      `${sourceLabel(source)} lists ${specs.length} weights but holds no weight data.`,
      fileContext(source),
    );
  }
  return {};
}

/** Names for an error message: the first few, and how many more. */
function someNames(names: readonly string[]): string {
  const shown = names.slice(0, 8).join(', ');
  return names.length > 8 ? `${shown} and ${names.length - 8} more` : shown || 'none';
}

/** Weight names as tfjs-layers matches them: `:0` suffixes of TensorFlow variable names dropped. */
function plainName(name: string): string {
  return name.replace(/:\d+$/, '');
}

/**
 * The stored weight for the Keras weight `layer/weight`: stored under that name; or, as tfjs-layers
 * accepts, under `layer/layer/weight` (Keras 2 HDF5); or under a path that ends with it (the layer
 * of a nested model, `outer/layer/weight`).
 */
function findWeight(kerasName: string, stored: readonly string[]): string | undefined {
  const exact = stored.find((name) => plainName(name) === kerasName);
  if (exact !== undefined) return exact;
  const shortened = stored.filter((name) => {
    const tokens = plainName(name).split('/');
    return [...tokens.slice(0, -2), tokens[tokens.length - 1]].join('/') === kerasName;
  });
  if (shortened.length === 1) return shortened[0];
  const nested = stored.filter((name) => plainName(name).endsWith(`/${kerasName}`));
  return nested.length === 1 ? nested[0] : undefined;
}

/**
 * Matches decoded weights to the graph's parameters and state. Returns the tensors the model
 * takes; disposes every decoded tensor it does not return.
 */
function matchWeights(
  graph: Graph,
  weightNames: ReadonlyMap<string, string>,
  decoded: tf.NamedTensorMap,
  optimizerWeights: ReadonlySet<string>,
  source: LayersModelSource,
): Map<string, tf.Tensor> {
  const label = sourceLabel(source);
  const specs = new Map<string, TensorInfo>([...graph.params, ...graph.state].map((t) => [t.name, t]));
  const stored = Object.keys(decoded).filter((name) => !optimizerWeights.has(name));
  const weights = new Map<string, tf.Tensor>();
  const used = new Set<string>();
  try {
    for (const [kerasName, dynnName] of weightNames) {
      const context = { ...fileContext(source), node: dynnName.slice(0, dynnName.lastIndexOf('/')) };
      const storedName = findWeight(
        kerasName,
        stored.filter((name) => !used.has(name)),
      );
      if (storedName === undefined) {
        throw new DynnError(
          'DATA_MISSING',
          `${label} has no weight '${kerasName}' (for '${dynnName}'). Stored weights: ${someNames(stored)}.`,
          context,
        );
      }
      const tensor = decoded[storedName]!;
      const spec = specs.get(dynnName)!;
      if (tensor.shape.join(',') !== spec.shape.join(',')) {
        throw new DynnError(
          'SHAPE_MISMATCH',
          `${label}: weight '${storedName}' is [${tensor.shape}] but '${dynnName}' needs [${spec.shape}].`,
          context,
        );
      }
      used.add(storedName);
      weights.set(dynnName, tensor.dtype === spec.dtype ? tensor : tf.cast(tensor, spec.dtype));
    }
    const unused = stored.filter((name) => !used.has(name));
    if (unused.length > 0) {
      throw new DynnError(
        'DATA_CORRUPT',
        `${label} holds weights no imported layer uses: ${someNames(unused)}. The topology and weights do not match.`,
        fileContext(source),
      );
    }
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  } finally {
    const kept = new Set(weights.values());
    tf.dispose(Object.values(decoded).filter((t) => !kept.has(t)));
  }
  return weights;
}

/**
 * Imports a tfjs-layers or Keras model (model.json + weights, as saved by tfjs-layers'
 * `model.save` or written by the tensorflowjs converter) as a dynn {@link Model}. Its outputs
 * equal tfjs-layers' `predict`; see {@link convertLayersTopology} for the layers it reads.
 *
 * `source` is a URL or path read with `tf.io.getLoadHandlers` (`http(s)://`, `indexeddb://`,
 * `localstorage://`, or any handler registered with `tf.io.registerLoadRouter`; in Node a file
 * path or `file://` URL of a model.json or its folder; other strings are read over HTTP, as
 * tfjs-layers does), a tfjs `IOHandler` (`tf.io.browserFiles`,
 * `tf.io.fromMemory`...), or loaded `ModelArtifacts`.
 *
 * @throws DynnError `UNSUPPORTED_LAYER` naming the layer and its class when a layer cannot be
 * imported; `MODEL_FILE` when the source cannot be read or is not a layers model;
 * `DATA_MISSING` / `SHAPE_MISMATCH` / `DATA_CORRUPT` when the weights do not fit the topology.
 *
 * @example
 * ```ts
 * const model = await importLayersModel(runtime, 'https://example.com/mobilenet/model.json');
 * const probabilities = await model.predict(images);
 * ```
 */
export async function importLayersModel(
  runtime: Runtime,
  source: LayersModelSource,
  options: ImportLayersModelOptions = {},
): Promise<Model> {
  const artifacts = await loadArtifacts(source, options);
  const topology = artifacts.modelTopology;
  if (artifacts.format === 'graph-model' || topology instanceof ArrayBuffer) {
    throw new DynnError(
      'MODEL_FILE',
      `${sourceLabel(source)} is a tfjs graph model; importLayersModel reads layers (Keras) models.`,
      fileContext(source),
    );
  }
  if (topology === undefined) {
    throw new DynnError('MODEL_FILE', `${sourceLabel(source)} has no modelTopology.`, fileContext(source));
  }
  let conversion: LayersConversion;
  try {
    conversion = convertLayersTopology(runtime, topology);
  } catch (error) {
    if (error instanceof DynnError && typeof source === 'string') {
      throw new DynnError(error.code, `${source}: ${error.message}`, { ...error.context, file: source });
    }
    throw error;
  }
  // Start a backend if none was chosen (wasm in Node) before the weights become tensors.
  await ensureBackend();
  const decoded = await decodeArtifactsWeights(artifacts, source);
  const optimizerWeights = new Set(
    (artifacts.weightSpecs ?? []).filter((spec) => spec.group === 'optimizer').map((spec) => spec.name),
  );
  const weights = matchWeights(conversion.graph, conversion.weightNames, decoded, optimizerWeights, source);
  try {
    return createModel(runtime, conversion.graph, { weights });
  } catch (error) {
    tf.dispose([...weights.values()].filter((t) => !t.isDisposed));
    throw error;
  }
}
