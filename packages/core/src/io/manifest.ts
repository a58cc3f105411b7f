import type * as tf from '@tensorflow/tfjs-core';
import type { DType, Graph } from '../ir.js';
import { DTYPE_BYTES, SchemaReader } from './graph-schema.js';
import type { LoadLimits } from './limits.js';
import { modelFileError } from './model-file-error.js';
import { isQuantizationDType, QUANTIZATION_BYTES, type Quantization } from './quantize.js';

/**
 * One weight of a model file, checked: its name, shape, dtype (what it holds once loaded), how it
 * is quantized, if it is, and the bytes it takes in the shards.
 */
export interface WeightEntry {
  name: string;
  shape: number[];
  dtype: DType;
  /** Set when the shards hold the weight quantized (tfjs converter format); loading dequantizes it. */
  quantization?: Quantization;
  byteLength: number;
}

/** One group of a weights manifest, checked: its shard paths and the weights stored across them, in order. */
export interface WeightGroup {
  paths: string[];
  weights: WeightEntry[];
  /** Bytes its shards hold together. */
  byteLength: number;
}

const SCHEME = /^[a-z][a-z0-9+.-]*:/i;

function shardPath(r: SchemaReader, value: unknown, path: string): string {
  const shard = r.name(value, path);
  // Shards live beside model.json: a path that could leave that folder (absolute, `..`, another
  // scheme or host) would let a hostile file read anything the process can.
  const unsafe =
    SCHEME.test(shard) ||
    shard.startsWith('/') ||
    shard.includes('\\') ||
    [...shard].some((c) => c.charCodeAt(0) < 0x20) ||
    shard.split('/').some((segment) => segment === '..');
  if (unsafe) {
    r.fail(path, `is '${shard}'; shard paths must be relative to model.json and stay in its folder`);
  }
  return shard;
}

/**
 * Checks the untrusted `quantization` of a weight whose dtype is `dtype`: a known quantization
 * dtype, finite `min` and `scale` for uint8 / uint16, and float32 as the weight's dtype (and as
 * `original_dtype`, which the tensorflowjs converter adds). Returns only the fields tfjs reads.
 */
export function checkQuantization(
  r: SchemaReader,
  value: unknown,
  dtype: unknown,
  path: string,
): Quantization {
  const o = r.object(value, path);
  if (!isQuantizationDType(o.dtype)) {
    r.fail(
      `${path}.dtype`,
      `is ${JSON.stringify(o.dtype)}; quantized weights are stored as one of ${Object.keys(QUANTIZATION_BYTES).join(', ')}`,
    );
  }
  if (dtype !== 'float32') {
    r.fail(
      path,
      `is set on a weight of dtype ${JSON.stringify(dtype)}; only float32 weights can be quantized`,
    );
  }
  if (o.original_dtype !== undefined && o.original_dtype !== 'float32') {
    r.fail(
      `${path}.original_dtype`,
      `is ${JSON.stringify(o.original_dtype)}; only float32 weights can be quantized`,
    );
  }
  if (o.dtype === 'float16') {
    // tfjs ignores min and scale for float16; if present they must still be numbers.
    if (o.min !== undefined) r.number(o.min, `${path}.min`);
    if (o.scale !== undefined) r.number(o.scale, `${path}.scale`);
    return { dtype: 'float16' };
  }
  return {
    dtype: o.dtype,
    min: r.number(o.min, `${path}.min`),
    scale: r.number(o.scale, `${path}.scale`),
  };
}

function weightEntry(r: SchemaReader, value: unknown, path: string): WeightEntry {
  const o = r.object(value, path);
  const shape = r.shape(o.shape, `${path}.shape`, false);
  const dtype = r.dtype(o.dtype, `${path}.dtype`);
  const elements = r.elementCount(shape, `${path}.shape`);
  const entry: WeightEntry = {
    name: r.name(o.name, `${path}.name`),
    shape,
    dtype,
    byteLength: elements * DTYPE_BYTES[dtype],
  };
  if (o.quantization !== undefined) {
    entry.quantization = checkQuantization(r, o.quantization, dtype, `${path}.quantization`);
    entry.byteLength = elements * QUANTIZATION_BYTES[entry.quantization.dtype];
  }
  return entry;
}

/** The tfjs weight specs of checked entries, for `tf.io.decodeWeights` (which dequantizes). */
export function weightSpecsOf(entries: readonly WeightEntry[]): tf.io.WeightsManifestEntry[] {
  return entries.map(({ name, shape, dtype, quantization }) =>
    quantization === undefined
      ? { name, shape, dtype }
      : { name, shape, dtype, quantization: { ...quantization } },
  );
}

function checkTotal(r: SchemaReader, entries: readonly WeightEntry[], what: string): number {
  const names = new Set<string>();
  let total = 0;
  for (const entry of entries) {
    if (names.has(entry.name)) r.fail(what, `lists weight '${entry.name}' twice`);
    names.add(entry.name);
    total += entry.byteLength;
  }
  r.weightBytes(total, what);
  return total;
}

/** Checks untrusted weight specs (`ModelArtifacts.weightSpecs`) and returns them with their byte lengths. */
export function checkWeightSpecs(
  value: unknown,
  file: string,
  limits: LoadLimits,
  path = 'weightSpecs',
): WeightEntry[] {
  const r: SchemaReader = new SchemaReader(file, limits);
  const entries = r.list(value, path).map((w, i) => weightEntry(r, w, `${path}[${i}]`));
  checkTotal(r, entries, `The weights of ${path}`);
  return entries;
}

/**
 * Checks an untrusted tfjs weights manifest: groups of safe relative shard paths and of weights
 * with known dtypes, bounded shapes, unique names and a total size within the limits.
 */
export function checkWeightsManifest(value: unknown, file: string, limits: LoadLimits): WeightGroup[] {
  const r: SchemaReader = new SchemaReader(file, limits);
  const groups = r.list(value, 'weightsManifest').map((g, i): WeightGroup => {
    const path = `weightsManifest[${i}]`;
    const o = r.object(g, path);
    const paths = r.list(o.paths, `${path}.paths`).map((p, j) => shardPath(r, p, `${path}.paths[${j}]`));
    const weights = r
      .list(o.weights, `${path}.weights`)
      .map((w, j) => weightEntry(r, w, `${path}.weights[${j}]`));
    const byteLength = weights.reduce((sum, w) => sum + w.byteLength, 0);
    if (byteLength > 0 && paths.length === 0) {
      r.fail(`${path}.paths`, `is empty, but its weights need ${byteLength} bytes`);
    }
    return { paths, weights, byteLength };
  });
  checkTotal(
    r,
    groups.flatMap((g) => g.weights),
    'The weights of weightsManifest',
  );
  const shards = new Set<string>();
  for (const group of groups) {
    for (const shard of group.paths) {
      if (shards.has(shard)) r.fail('weightsManifest', `lists shard '${shard}' twice`);
      shards.add(shard);
    }
  }
  return groups;
}

/**
 * Checks that the stored weights are exactly the graph's parameters and state: the same names,
 * shapes and dtypes, none missing and none extra.
 */
export function checkWeightsMatchGraph(entries: readonly WeightEntry[], graph: Graph, file: string): void {
  const stored = new Map(entries.map((e) => [e.name, e]));
  for (const [kind, tensors] of [
    ['parameter', graph.params],
    ['state tensor', graph.state],
  ] as const) {
    for (const t of tensors) {
      const entry = stored.get(t.name);
      if (entry === undefined) throw modelFileError(file, `has no stored weights for ${kind} '${t.name}'.`);
      if (entry.dtype !== t.dtype || entry.shape.join(',') !== t.shape.join(',')) {
        throw modelFileError(
          file,
          `stores ${kind} '${t.name}' as ${entry.dtype}[${entry.shape}], but the graph declares ${t.dtype}[${t.shape}].`,
        );
      }
      stored.delete(t.name);
    }
  }
  if (stored.size > 0) {
    throw modelFileError(
      file,
      `stores weights the graph does not declare: ${[...stored.keys()].join(', ')}.`,
    );
  }
}
