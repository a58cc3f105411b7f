import type * as tf from '@tensorflow/tfjs-core';
import { SchemaReader } from './graph-schema.js';
import type { LoadLimits } from './limits.js';
import { checkWeightsManifest, type WeightGroup } from './manifest.js';
import { modelFileError } from './model-file-error.js';

/** The `format` of a dynn model file (tfjs' ModelArtifacts field; tfjs-layers writes `layers-model`). */
export const MODEL_FORMAT = 'dynn-graph';

/** The most bytes per weight shard: the tfjs convention, which keeps each file cache-friendly for browsers. */
export const SHARD_BYTES = 4 * 1024 * 1024;

/** The file name of a model's graph and weights manifest when a folder is given. */
export const MODEL_JSON = 'model.json';

/** The tfjs names of `count` shards: `group1-shard1of2.bin`, `group1-shard2of2.bin`. */
export function shardNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`);
}

/** Cuts `data` into pieces of at most `shardBytes` (none for empty data). */
export function splitShards(data: ArrayBuffer, shardBytes: number): ArrayBuffer[] {
  const shards: ArrayBuffer[] = [];
  for (let start = 0; start < data.byteLength; start += shardBytes)
    shards.push(data.slice(start, start + shardBytes));
  return shards;
}

/** The model.json of `artifacts` whose weights are stored, in one group, in the shards `paths`. */
export function modelJsonFor(artifacts: tf.io.ModelArtifacts, paths: string[]): tf.io.ModelJSON {
  const json: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology ?? {},
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy ?? null,
    weightsManifest: [{ paths, weights: artifacts.weightSpecs ?? [] }],
  };
  // Fields other tfjs tools put in model.json travel along untouched.
  if (artifacts.trainingConfig !== undefined) json.trainingConfig = artifacts.trainingConfig;
  if (artifacts.signature !== undefined) json.signature = artifacts.signature;
  if (artifacts.userDefinedMetadata !== undefined) json.userDefinedMetadata = artifacts.userDefinedMetadata;
  return json;
}

/** A model.json checked for its outer structure: the topology (unchecked) and the checked weights manifest. */
export interface ModelJsonContents {
  /** The whole parsed model.json. */
  json: Record<string, unknown>;
  modelTopology: unknown;
  groups: WeightGroup[];
}

/** Checks the outer structure of a parsed model.json: an object with a topology and a valid weights manifest. */
export function checkModelJson(value: unknown, file: string, limits: LoadLimits): ModelJsonContents {
  const r: SchemaReader = new SchemaReader(file, limits);
  const json = r.object(value, 'model.json');
  if (json.modelTopology === undefined) r.fail('model.json', 'has no modelTopology');
  return {
    json,
    modelTopology: json.modelTopology,
    groups: checkWeightsManifest(json.weightsManifest, file, limits),
  };
}

/** What to do with a model file of another `format` than dynn's. */
function otherFormatFix(format: unknown): string {
  if (format === 'layers-model' || format === undefined) {
    // tfjs-layers files written before the format field existed have none.
    return 'If it is a tfjs-layers (Keras) model, import it with importLayersModel or convert it with `dynn convert`.';
  }
  if (format === 'graph-model') {
    return 'A tfjs graph model loads with loadGraphModel from @tensorflow/tfjs-converter; dynn reads its own models and tfjs-layers models.';
  }
  return 'Load it with the library that reads that format.';
}

/** Throws unless `format` says the file holds a dynn graph. */
export function checkFormat(format: unknown, file: string): void {
  if (format === MODEL_FORMAT) return;
  throw modelFileError(
    file,
    `is ${typeof format === 'string' ? `a '${format}'` : 'not a'} model file, not a dynn graph (format '${MODEL_FORMAT}').`,
    otherFormatFix(format),
  );
}
