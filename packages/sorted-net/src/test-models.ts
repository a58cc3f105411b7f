// Small models the tests of this package share. Not exported from the package.
import { createRuntime, type Graph } from '@dynn/core';
import { sortedNet } from './plugin.js';
import { type ResidualCnnOptions, residualCnnGraph } from './residual-cnn.js';

/** A runtime with the sorted-net plugin. */
export const runtime = createRuntime({ plugins: [sortedNet()] });

/** A tiny residual CNN (8x8 images, stages of 8 and 16 channels, 2 blocks each) for unit tests. */
export function residualCnn(options: ResidualCnnOptions = {}): Graph {
  return residualCnnGraph(runtime, { size: 8, widths: [8, 16], blocks: 2, ...options });
}
