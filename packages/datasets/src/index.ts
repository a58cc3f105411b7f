/**
 * `@dynn/datasets`: checksummed loaders for the real data sets bundled with dynn (Fashion-MNIST,
 * UCI digits, Austen, SNAP temporal graphs, MovieLens), in Node and in the browser.
 *
 * @packageDocumentation
 */
export type { CharCorpus, CharCorpusTensors } from './austen.js';
export { loadAusten } from './austen.js';
export { BITCOIN_OTC_STEP_SECONDS, loadBitcoinOtc } from './bitcoin-otc.js';
export type { ByteSource, DataLocation } from './byte-source.js';
export type { DataFileStatus, DatasetInfo, DatasetName, DatasetStatus } from './catalog.js';
export { DATASETS, listDatasets } from './catalog.js';
export type { DataFileName } from './data-manifest.js';
export type { Digits, DigitsTensors } from './digits.js';
export { loadDigits } from './digits.js';
export type { EdgeList, EdgeTensors } from './edge-list.js';
export type { FashionMnist, ImageSplit, ImageTensors } from './fashion-mnist.js';
export { FASHION_MNIST_CLASS_NAMES, loadFashionMnist } from './fashion-mnist.js';
export type { MovieLensRatings, RatingTensors } from './movielens.js';
export { loadMovieLens } from './movielens.js';
export type { GraphSnapshot, TemporalGraph } from './temporal-graph.js';
export { loadUciMessages, UCI_MESSAGES_STEP_SECONDS } from './uci-messages.js';
