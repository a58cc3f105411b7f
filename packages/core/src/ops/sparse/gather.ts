import { defineOp } from '../../op.js';
import { gatherRows } from '../basic/gather-rows.js';
import { formatShape } from '../basic/shape-helpers.js';
import { checkIndices, rowChannels } from './sparse-helpers.js';

/**
 * `core.Gather`: rows of `params` picked by integer indices (`tf.gather` on the first axis), with
 * a gradient that works on every backend, wasm included (see {@link gatherRows}).
 *
 * - inputs: `params` `[n, ...row]` (float32 or int32), `indices` int32 of any shape, each in
 *   `[0, n)`
 * - output: `[...indices.shape, ...row]`, of `params`' dtype
 * - gradient: `params` gets the scatter-add of the output gradient's rows at `indices` (repeated
 *   indices add up; rows never picked get 0); `indices` gets none
 *
 * Indices outside `[0, n)` make the cpu backend throw; other backends give undefined rows (no
 * readback checks them). Channels: each row axis of `params` is tied to its place in the output
 * (after the index axes); the indices hold none. FLOPs: 0 (a lookup moves data, adds nothing).
 */
export const gatherOp = defineOp({
  type: 'core.Gather',
  version: 2,
  description: 'Picks rows of params by int32 indices of any shape: [n, ...row] -> [...indices, ...row].',
  attrs: {},
  inputs: { min: 2 },
  inferShape(_, [params, indices]) {
    if (params!.shape.length < 1) throw new Error('Gather needs params of rank >= 1, got a scalar');
    if (params!.dtype === 'bool') {
      throw new Error(`Gather needs float32 or int32 params, got bool${formatShape(params!.shape)}`);
    }
    checkIndices('Gather', 'indices', indices!);
    return [{ shape: [...indices!.shape, ...params!.shape.slice(1)], dtype: params!.dtype }];
  },
  channels: (_, inputs, [y]) => rowChannels(inputs, [0], y!, inputs[1]!.shape.length - 1),
  forward(_, [params, indices]) {
    if (params!.rank < 1) throw new Error('Gather needs params of rank >= 1, got a scalar');
    checkIndices('Gather', 'indices', indices!);
    return [gatherRows(params!, indices!)];
  },
  flops: () => 0,
});
