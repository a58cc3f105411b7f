/**
 * Import of tfjs-layers / Keras models: {@link importLayersModel} loads model.json + weights as a
 * dynn model; {@link convertLayersTopology} turns the topology alone into a graph.
 */
export type { LayersConversion } from './convert.js';
export { convertLayersTopology, SUPPORTED_LAYER_CLASSES } from './convert.js';
export type { ImportLayersModelOptions, LayersModelSource } from './import.js';
export { importLayersModel } from './import.js';
