import { elementwiseChannels } from '../../channel-axes.js';
import { defineOp } from '../../op.js';

/**
 * `core.Identity`: passes its input through unchanged (an anchor for graph passes).
 * Channels: every non-batch axis tied from input to output.
 */
export const identityOp = defineOp({
  type: 'core.Identity',
  version: 1,
  description: 'Passes its input through unchanged; graph passes use it as an anchor.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: (_, [x]) => [{ shape: x!.shape, dtype: x!.dtype }],
  channels: (_, inputs, outputs) => elementwiseChannels(inputs, outputs),
  forward: (_, [x]) => [x!],
  flops: () => 0,
});
