import { extractPass } from '../extract-sub-network.js';
import { foldBatchNormPass } from '../fold-batch-norm.js';
import { maskChannelsPass } from '../mask-channels.js';
import { definePlugin } from '../plugin.js';
import { removeChannelsPass } from '../remove-channels.js';
import { reorderChannelsPass } from '../reorder-channels.js';
import { splitLayerPass } from '../split-layer.js';
import { addStateVariantsPass } from '../state-variants.js';
import { basicOps } from './basic/index.js';
import { sequenceOps } from './sequence/index.js';
import { sparseOps } from './sparse/index.js';
import { spatialOps } from './spatial/index.js';

/** Every op of the `core` domain. */
export const coreOps = [...basicOps, ...spatialOps, ...sequenceOps, ...sparseOps];

/** The passes of the `core` domain: channel groups, sub-networks, state variants, batch-norm folding. */
export const corePasses = [
  removeChannelsPass,
  maskChannelsPass,
  reorderChannelsPass,
  splitLayerPass,
  extractPass,
  addStateVariantsPass,
  foldBatchNormPass,
];

/** The core plugin: the standard op set and the weight-aware passes. Every runtime includes it. */
export const corePlugin = definePlugin({
  name: '@dynn/core',
  domain: 'core',
  opset: 2,
  ops: coreOps,
  passes: corePasses,
});
