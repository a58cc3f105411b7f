import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { scatterRows } from '../basic/gather-rows.js';
import { product } from '../basic/shape-helpers.js';
import {
  checkSegmentTensors,
  inferSegmentShape,
  type SegmentAttrs,
  type SegmentOptions,
  segmentAttrSchema,
  segmentChannels,
  segmentCount,
  segmentInputs,
} from './segment-attrs.js';
import { segmentSum } from './segment-sum.js';
import { bound, rowBroadcastShape } from './sparse-helpers.js';

/**
 * Rows per segment, float32 `[numSegments]`, without a readback: for ascending ids from two
 * binary searches (`tf.searchSorted`, O(numSegments log k)), else a scatter-add of ones.
 */
export function segmentCounts(segmentIds: tf.Tensor, numSegments: number, sorted: boolean): tf.Tensor {
  const k = segmentIds.size;
  if (k === 0 || numSegments === 0) return tf.zeros([numSegments]);
  return tf.tidy(() => {
    if (!sorted) return scatterRows(segmentIds, tf.ones([k]), numSegments);
    const segments = tf.range(0, numSegments, 1, 'int32');
    const ends = bound(segmentIds, segments, 'right');
    const starts = bound(segmentIds, segments, 'left');
    return tf.cast(tf.sub(ends, starts), 'float32');
  });
}

/**
 * Averages the rows of `data` (`[k, ...row]`, float32) by segment: output row `s` is the mean of
 * the rows whose `segmentIds` (int32 `[k]`, in `[0, numSegments)`) equal `s`; a segment no id
 * names is 0. Returns `[numSegments, ...row]`. With `sorted` ids, the counts come from a binary
 * search instead of a scatter; the results are the same.
 *
 * The gradient to `data` is `gather(dy / count, segmentIds)` (through {@link segmentSum}); the ids
 * get none. Runs on every backend, nothing read back.
 */
export function segmentMean(
  data: tf.Tensor,
  segmentIds: tf.Tensor,
  numSegments: number,
  options: SegmentOptions = {},
): tf.Tensor {
  checkSegmentTensors('segmentMean', data, segmentIds, numSegments);
  return tf.tidy(() => {
    const counts = segmentCounts(segmentIds, numSegments, options.sorted ?? false);
    const divisor = tf.reshape(tf.maximum(counts, 1), rowBroadcastShape(numSegments, data.rank));
    return tf.div(segmentSum(data, segmentIds, numSegments), divisor);
  });
}

/**
 * `core.SegmentMean`: averages the rows of `data` by segment id (PyG's `scatter_mean`), on every
 * backend (see {@link segmentMean}).
 *
 * - inputs: `data` `[k, ...row]` float32, `segmentIds` `[k]` int32 in `[0, segments)`, and
 *   optionally a third input whose first dimension is the number of segments (a data-dependent
 *   count: e.g. the node features of a graph whose incoming messages are averaged per node)
 * - attributes: `numSegments` (exactly one of it and the third input), `sorted` (ascending ids:
 *   the counts come from a binary search instead of a scatter; same results)
 * - output: `[segments, ...row]`; an empty segment is 0
 * - gradient: `data` gets `gather(dy / count, segmentIds)`; ids and the third input get none
 *
 * Channels: each row axis of `data` is tied to the same axis of the output. FLOPs: one add per
 * element of `data` and one division per element of the output.
 */
export const segmentMeanOp = defineOp<SegmentAttrs>({
  type: 'core.SegmentMean',
  version: 2,
  description: 'Averages the rows of data by segment id: [k, ...row] and ids [k] -> [segments, ...row].',
  attrs: segmentAttrSchema,
  inputs: segmentInputs,
  inferShape: (attrs, inputs) => inferSegmentShape('SegmentMean', attrs, inputs),
  channels: (_, inputs, outputs) => segmentChannels(inputs, outputs),
  forward: (ctx, inputs) => [
    segmentMean(inputs[0]!, inputs[1]!, segmentCount(ctx.attrs, inputs), { sorted: ctx.attrs.sorted }),
  ],
  flops: (_, [data], [out]) => product(data!) + product(out!),
});
