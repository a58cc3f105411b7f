import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { gatherRows, scatterRows } from '../basic/gather-rows.js';
import { withSavedGrad } from '../basic/saved-grad.js';
import { product } from '../basic/shape-helpers.js';
import {
  checkSegmentTensors,
  inferSegmentShape,
  type SegmentAttrs,
  segmentAttrSchema,
  segmentChannels,
  segmentCount,
  segmentInputs,
} from './segment-attrs.js';

/**
 * Sums the rows of `data` (`[k, ...row]`, float32) by segment: row `i` adds into output row
 * `segmentIds[i]` (int32 `[k]`, in `[0, numSegments)`). Returns `[numSegments, ...row]`; a segment
 * no id names is 0. Ids need not be sorted.
 *
 * Built on `tf.scatterND` (which adds repeated ids up on cpu, wasm, webgl and webgpu), so it runs
 * where `tf.unsortedSegmentSum` does not (wasm has no `UnsortedSegmentSum` kernel). Its gradient
 * to `data` is `gatherRows(dy, segmentIds)`; the ids get none. Nothing is read back.
 */
export function segmentSum(data: tf.Tensor, segmentIds: tf.Tensor, numSegments: number): tf.Tensor {
  checkSegmentTensors('segmentSum', data, segmentIds, numSegments);
  return withSavedGrad(
    [data],
    [segmentIds],
    (rows) => scatterRows(segmentIds, rows, numSegments),
    (dy, [ids]) => [ids!.size === 0 ? tf.zeros(data.shape) : gatherRows(dy, ids!)],
  );
}

/**
 * `core.SegmentSum`: sums the rows of `data` by segment id (TensorFlow's
 * `unsorted_segment_sum`), on every backend (see {@link segmentSum}).
 *
 * - inputs: `data` `[k, ...row]` float32, `segmentIds` `[k]` int32 in `[0, segments)`, and
 *   optionally a third input whose first dimension is the number of segments (a data-dependent
 *   count: e.g. the node features of a graph whose edges are summed per target node)
 * - attributes: `numSegments` (exactly one of it and the third input), `sorted` (accepted for a
 *   uniform interface: the scatter-add is one pass over the rows either way, so it changes nothing)
 * - output: `[segments, ...row]`; an empty segment is 0
 * - gradient: `data` gets `gather(dy, segmentIds)`; ids and the third input get none
 *
 * Channels: each row axis of `data` is tied to the same axis of the output. FLOPs: one add per
 * element of `data`.
 */
export const segmentSumOp = defineOp<SegmentAttrs>({
  type: 'core.SegmentSum',
  version: 2,
  description: 'Sums the rows of data by segment id: [k, ...row] and ids [k] -> [segments, ...row].',
  attrs: segmentAttrSchema,
  inputs: segmentInputs,
  inferShape: (attrs, inputs) => inferSegmentShape('SegmentSum', attrs, inputs),
  channels: (_, inputs, outputs) => segmentChannels(inputs, outputs),
  forward: (ctx, inputs) => [segmentSum(inputs[0]!, inputs[1]!, segmentCount(ctx.attrs, inputs))],
  flops: (_, [data]) => product(data!),
});
