import { definePlugin } from '../plugin.js';
import { basicOps } from './basic/index.js';
import { sequenceOps } from './sequence/index.js';
import { spatialOps } from './spatial/index.js';

/** Every op of the `core` domain. */
export const coreOps = [...basicOps, ...spatialOps, ...sequenceOps];

/** The core plugin: the standard op set. Every runtime includes it. */
export const corePlugin = definePlugin({
  name: '@dynn/core',
  domain: 'core',
  opset: 1,
  ops: coreOps,
});
