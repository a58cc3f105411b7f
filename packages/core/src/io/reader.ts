import type * as tf from '@tensorflow/tfjs-core';
import type { LoadLimits } from './limits.js';
import { type WeightGroup, weightSpecsOf } from './manifest.js';
import { modelFileError } from './model-file-error.js';
import { checkModelJson, type ModelJsonContents } from './model-json.js';
import { parseJsonText } from './safe-json.js';

/**
 * Reads a saved model piece by piece (model.json, then each shard), so loading checks each piece
 * before reading the next and never reads more than the file says it holds. The `file://`
 * handler and the `http(s)://` loader implement it; any object that does gets the same checks.
 */
export interface ModelReader {
  /** Where model.json is: named in every error. */
  readonly url: string;
  /** The text of model.json; rejects with a `MODEL_FILE` error when it is missing or over `maxBytes`. */
  readModelJson(maxBytes: number): Promise<string>;
  /** Byte lengths of shards, when the store can tell them without reading (file sizes). */
  shardByteLengths?(paths: readonly string[]): Promise<number[]>;
  /**
   * The bytes of the shard at `path` (relative to model.json); rejects with a `MODEL_FILE` error
   * when it is missing or holds more than `maxBytes`.
   */
  readShard(path: string, maxBytes: number): Promise<ArrayBuffer>;
}

/** True when `value` implements {@link ModelReader}. */
export function isModelReader(value: unknown): value is ModelReader {
  const candidate = value as Partial<ModelReader> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.url === 'string' &&
    typeof candidate.readModelJson === 'function' &&
    typeof candidate.readShard === 'function'
  );
}

/** Decodes UTF-8 bytes, refusing invalid sequences rather than replacing them. */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw modelFileError(
      file,
      'is not UTF-8 text.',
      'Check that the location holds a model.json file, not another kind of file.',
    );
  }
}

/** Reads, parses and checks model.json through `reader`: safe JSON, then its outer structure. */
export async function readModelJson(reader: ModelReader, limits: LoadLimits): Promise<ModelJsonContents> {
  const text = await reader.readModelJson(limits.maxModelJsonBytes);
  return checkModelJson(parseJsonText(text, reader.url, limits), reader.url, limits);
}

/**
 * Reads every shard of `groups`, checking first (where the reader can tell sizes) and then while
 * reading that each group's shards hold exactly the bytes its weights need. Returns the shards
 * in manifest order.
 */
export async function readShards(
  reader: ModelReader,
  groups: readonly WeightGroup[],
): Promise<ArrayBuffer[]> {
  const file = reader.url;
  const mismatch = (i: number, group: WeightGroup, found: string) =>
    modelFileError(
      file,
      `lists ${group.byteLength} bytes of weights in weightsManifest[${i}], but its shards hold ${found}.`,
      'The shards are truncated or belong to another model.json: copy model.json together with all of its shard files, unchanged.',
    );
  if (reader.shardByteLengths !== undefined) {
    for (const [i, group] of groups.entries()) {
      const sizes = await reader.shardByteLengths(group.paths);
      const total = sizes.reduce((a, b) => a + b, 0);
      if (total !== group.byteLength) {
        throw mismatch(
          i,
          group,
          `${total} bytes (${group.paths.map((p, j) => `${p}: ${sizes[j]}`).join(', ')})`,
        );
      }
    }
  }
  const buffers: ArrayBuffer[] = [];
  for (const [i, group] of groups.entries()) {
    let remaining = group.byteLength;
    for (const path of group.paths) {
      const buffer = await reader.readShard(path, remaining);
      if (buffer.byteLength > remaining) {
        throw mismatch(i, group, `more (${path} alone is ${buffer.byteLength} bytes)`);
      }
      remaining -= buffer.byteLength;
      buffers.push(buffer);
    }
    if (remaining > 0) throw mismatch(i, group, `${group.byteLength - remaining} bytes`);
  }
  return buffers;
}

/** The tfjs artifacts of a checked model.json and its shards. */
export function artifactsFrom(contents: ModelJsonContents, weightData: ArrayBuffer[]): tf.io.ModelArtifacts {
  const { json } = contents;
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: contents.modelTopology as object,
    weightSpecs: weightSpecsOf(contents.groups.flatMap((g) => g.weights)),
    weightData,
  };
  if (typeof json.format === 'string') artifacts.format = json.format;
  if (typeof json.generatedBy === 'string') artifacts.generatedBy = json.generatedBy;
  if (typeof json.convertedBy === 'string' || json.convertedBy === null) {
    artifacts.convertedBy = json.convertedBy;
  }
  return artifacts;
}
