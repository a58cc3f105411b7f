import type { DType, Graph } from '../ir.js';
import { DTYPE_BYTES, SchemaReader } from './graph-schema.js';
import type { LoadLimits } from './limits.js';
import { modelFileError } from './model-file-error.js';

/** One weight of a model file, checked: its name, shape, dtype and byte length. */
export interface WeightEntry {
  name: string;
  shape: number[];
  dtype: DType;
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

function weightEntry(r: SchemaReader, value: unknown, path: string): WeightEntry {
  const o = r.object(value, path);
  if (o.quantization !== undefined) {
    r.fail(`${path}.quantization`, 'is set, but dynn loads unquantized float32, int32 and bool weights only');
  }
  const shape = r.shape(o.shape, `${path}.shape`, false);
  const dtype = r.dtype(o.dtype, `${path}.dtype`);
  return {
    name: r.name(o.name, `${path}.name`),
    shape,
    dtype,
    byteLength: r.elementCount(shape, `${path}.shape`) * DTYPE_BYTES[dtype],
  };
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
