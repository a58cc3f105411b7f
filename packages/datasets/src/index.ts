/**
 * `@dynn/datasets`: checksummed loaders for the small real data sets bundled with dynn (UCI
 * digits, Austen, SNAP temporal graphs, MovieLens), in Node and in the browser, and the reading
 * code (byte sources, SHA-256 checks, IDX parsing) that data packages such as
 * `@dynn/data-fashion-mnist` build on.
 *
 * @packageDocumentation
 */
export type { CharCorpus, CharCorpusTensors } from './austen.js';
export { loadAusten } from './austen.js';
export { BITCOIN_OTC_STEP_SECONDS, loadBitcoinOtc } from './bitcoin-otc.js';
export type { ByteSource, DataLocation } from './byte-source.js';
export type {
  DataFileStatus,
  DatasetInfo,
  DatasetName,
  DatasetStatus,
  SeparateDataset,
} from './catalog.js';
export { DATASETS, dataPackageMissing, getDataset, listDatasets, SEPARATE_DATASETS } from './catalog.js';
export type { DataBundle, DataFileChecksums, DataFileName } from './data-manifest.js';
export type { Digits, DigitsTensors } from './digits.js';
export { loadDigits } from './digits.js';
export type { EdgeList, EdgeTensors } from './edge-list.js';
export { loadFashionMnist } from './fashion-mnist.js';
export type { IdxArray } from './idx.js';
export { parseIdx } from './idx.js';
export type { MovieLensRatings, RatingTensors } from './movielens.js';
export { loadMovieLens } from './movielens.js';
export { readBundledFile } from './read-data-file.js';
export type { GraphSnapshot, TemporalGraph } from './temporal-graph.js';
export { loadUciMessages, UCI_MESSAGES_STEP_SECONDS } from './uci-messages.js';
