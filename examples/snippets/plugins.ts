// The runtime of docs/plugins.md: a plugin is plain data until a runtime is built from it.
// docs/plugins.md quotes the region; CI checks the runtime provides the plugin's op and pass.
import { createRuntime, type Runtime } from '@dynn/core';
import { layerScale } from '../core/layer-scale-plugin.js';

/** A runtime with the layer-scale example plugin beside the core ops. */
export function layerScaleRuntime(): Runtime {
  // #region runtime
  const runtime = createRuntime({ plugins: [layerScale()] });
  // #endregion runtime
  return runtime;
}
