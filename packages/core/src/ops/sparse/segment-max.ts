import * as tf from '@tensorflow/tfjs-core';
import { defineOp } from '../../op.js';
import { gatherRows, scatterRows } from '../basic/gather-rows.js';
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
import { bound, rowBroadcastShape } from './sparse-helpers.js';

/**
 * `x` shifted down by `step` rows: row `i >= step` holds row `i - step`, the first `step` rows
 * hold `fill`. Sliced and padded as one flat vector (wasm slices a contiguous 1-D range several
 * times faster than rows of a 2-D tensor).
 */
function shiftRows(x: tf.Tensor, step: number, fill: number): tf.Tensor {
  const rowSize = x.size / x.shape[0]!;
  const flat = tf.reshape(x, [x.size]);
  const kept = tf.slice(flat, 0, x.size - step * rowSize);
  return tf.reshape(tf.pad(kept, [[step * rowSize, 0]], fill), x.shape);
}

/**
 * Segment maxima of rows sorted by ascending `ids`: a segmented inclusive max-scan (after the
 * step of width `w`, row `i` holds the max of the rows `i - 2w + 1 .. i` of its segment; steps
 * stop at the longest possible segment), then each segment's last row, found by binary search.
 * A step takes a shifted row only where it is greater (`tf.greater` + `tf.where`, several times
 * faster on wasm than `tf.maximum`); rows of another segment are pushed to -Infinity first.
 */
function sortedSegmentMax(rows: tf.Tensor, ids: tf.Tensor, numSegments: number, longest: number): tf.Tensor {
  const k = rows.shape[0]!;
  const perRow = rowBroadcastShape(k, rows.rank);
  const open = tf.zeros([k]);
  const closed = tf.fill([k], Number.NEGATIVE_INFINITY);
  let scan = rows;
  for (let step = 1; step < Math.min(longest, k); step *= 2) {
    const sameSegment = tf.equal(ids, shiftRows(ids, step, -1));
    const penalty = tf.reshape(tf.where(sameSegment, open, closed), perRow);
    const shifted = shiftRows(scan, step, Number.NEGATIVE_INFINITY);
    scan = tf.where(tf.greater(tf.add(shifted, penalty), scan), shifted, scan);
  }
  const segments = tf.range(0, numSegments, 1, 'int32');
  const ends = bound(ids, segments, 'right');
  const starts = bound(ids, segments, 'left');
  const last = gatherRows(scan, tf.maximum(tf.sub(ends, tf.scalar(1, 'int32')), tf.scalar(0, 'int32')));
  const filled = tf.reshape(tf.greater(ends, starts), rowBroadcastShape(numSegments, rows.rank));
  return tf.where(filled, last, tf.zerosLike(last));
}

/** The forward values of {@link segmentMax}, untaped. */
function segmentMaxValues(
  data: tf.Tensor,
  ids: tf.Tensor,
  numSegments: number,
  sorted: boolean,
  longest: number,
): tf.Tensor {
  const k = data.shape[0]!;
  if (k === 0 || numSegments === 0) return tf.zeros([numSegments, ...data.shape.slice(1)]);
  return tf.tidy(() => {
    if (sorted) return sortedSegmentMax(data, ids, numSegments, longest);
    // Rows in ascending id order (tf.topk of the negated ids sorts on the device).
    const order = tf.topk(tf.neg(tf.cast(ids, 'float32')), k).indices;
    return sortedSegmentMax(gatherRows(data, order), gatherRows(ids, order), numSegments, longest);
  });
}

/**
 * The gradient of {@link segmentMax} to `data`: each segment's `dy` goes to the rows equal to
 * its max, split equally among ties (as TensorFlow's segment max does).
 */
function segmentMaxGrad(
  dy: tf.Tensor,
  data: tf.Tensor,
  ids: tf.Tensor,
  out: tf.Tensor,
  numSegments: number,
): tf.Tensor {
  if (ids.size === 0) return tf.zeros(data.shape);
  return tf.tidy(() => {
    const atMax = tf.cast(tf.equal(data, gatherRows(out, ids)), 'float32');
    const ties = scatterRows(ids, atMax, numSegments);
    const share = tf.div(dy, tf.maximum(ties, 1));
    return tf.mul(atMax, gatherRows(share, ids));
  });
}

/** Options of {@link segmentMax}. */
export interface SegmentMaxOptions extends SegmentOptions {
  /**
   * The most rows any segment holds (default: all the rows). A promise, not checked: the max-scan
   * then takes `ceil(log2(maxSegmentLength))` steps instead of `ceil(log2(k))`, and a longer
   * segment gives a wrong max. Known bounds: an expert's capacity, a graph's largest in-degree.
   */
  maxSegmentLength?: number;
}

/** Attributes of `core.SegmentMax`: those of every segment reduction, and a segment-size bound. */
export type SegmentMaxAttrs = SegmentAttrs & {
  /** The most rows any segment holds (see {@link SegmentMaxOptions}), or null for no bound. */
  maxSegmentLength: number | null;
};

/** Steps of the segmented max-scan over `k` rows whose segments hold at most `longest` rows. */
function scanSteps(k: number, longest: number): number {
  const span = Math.min(k, longest);
  return span > 1 ? Math.ceil(Math.log2(span)) : 0;
}

/**
 * The maximum of the rows of `data` (`[k, ...row]`, float32) by segment, elementwise: output row
 * `s` is the max of the rows whose `segmentIds` (int32 `[k]`, in `[0, numSegments)`) equal `s`.
 * Returns `[numSegments, ...row]`. **A segment no id names is 0** (as PyG's `scatter_max`;
 * TensorFlow's `unsorted_segment_max` gives the lowest float32 there instead). NaN in `data`
 * gives unspecified results.
 *
 * Runs on every backend without a readback: the rows are sorted by id on the device (`tf.topk`;
 * skipped with `sorted: true`), reduced by a segmented max-scan of `ceil(log2 k)` elementwise
 * steps (fewer with `maxSegmentLength`), and each segment's last row is found by binary search
 * (`tf.searchSorted`). Sorted and unsorted ids give identical results (a max involves no
 * rounding). The device sort compares the ids as float32: exact below 2^24 segments. The scan
 * makes it several times slower than {@link segmentSum} (see `dynn bench core`).
 *
 * The gradient to `data` routes each segment's `dy` to the elements equal to the segment's max,
 * split equally among ties, as TensorFlow does; the ids get none.
 */
export function segmentMax(
  data: tf.Tensor,
  segmentIds: tf.Tensor,
  numSegments: number,
  options: SegmentMaxOptions = {},
): tf.Tensor {
  checkSegmentTensors('segmentMax', data, segmentIds, numSegments);
  const sorted = options.sorted ?? false;
  const bound = options.maxSegmentLength;
  if (bound !== undefined && (!Number.isInteger(bound) || bound < 1)) {
    throw new Error(`segmentMax needs a positive integer maxSegmentLength, got ${bound}`);
  }
  const longest = bound ?? data.shape[0]!;
  const op = tf.customGrad(
    // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
    (...args: any[]) => {
      const [rows, save] = args as [tf.Tensor, (tensors: tf.Tensor[]) => void];
      const out = segmentMaxValues(rows, segmentIds, numSegments, sorted, longest);
      // tfjs keeps its own copies until backprop ends: the caller may dispose the ids.
      save([rows, segmentIds, out]);
      return {
        value: out,
        gradFunc: (dy: tf.Tensor, [x, ids, y]: tf.Tensor[]) => [
          segmentMaxGrad(dy, x!, ids!, y!, numSegments),
        ],
      };
    },
  ) as unknown as (data: tf.Tensor) => tf.Tensor;
  return op(data);
}

/**
 * `core.SegmentMax`: the elementwise maximum of the rows of `data` by segment id, on every backend
 * (see {@link segmentMax}).
 *
 * - inputs: `data` `[k, ...row]` float32, `segmentIds` `[k]` int32 in `[0, segments)`, and
 *   optionally a third input whose first dimension is the number of segments (a data-dependent
 *   count)
 * - attributes: `numSegments` (exactly one of it and the third input), `sorted` (ascending ids:
 *   the device sort is skipped; identical results), `maxSegmentLength` (a promised bound on rows
 *   per segment: fewer scan steps)
 * - output: `[segments, ...row]`; **an empty segment is 0** (PyG's choice; TensorFlow gives the
 *   lowest float32)
 * - gradient: each segment's `dy` goes to the elements equal to its max, split equally among ties
 *   (as TensorFlow does); ids and the third input get none
 *
 * Channels: each row axis of `data` is tied to the same axis of the output (the max is taken per
 * element: no channel mixes). FLOPs: the segmented scan's comparisons, one per element of `data`
 * per step (`ceil(log2 k)` steps, or `ceil(log2 maxSegmentLength)`); the integer sort of the ids
 * is not counted.
 */
export const segmentMaxOp = defineOp<SegmentMaxAttrs>({
  type: 'core.SegmentMax',
  version: 2,
  description:
    'Elementwise max of the rows of data by segment id (0 for an empty segment): [k, ...row] -> [segments, ...row].',
  attrs: {
    ...segmentAttrSchema,
    maxSegmentLength: {
      kind: 'int',
      min: 1,
      default: null,
      doc: 'the most rows any segment holds (a promise, not checked): fewer scan steps; null: no bound',
    },
  },
  inputs: segmentInputs,
  inferShape: (attrs, inputs) => inferSegmentShape('SegmentMax', attrs, inputs),
  channels: (_, inputs, outputs) => segmentChannels(inputs, outputs),
  forward: (ctx, inputs) => [
    segmentMax(inputs[0]!, inputs[1]!, segmentCount(ctx.attrs, inputs), {
      sorted: ctx.attrs.sorted,
      ...(ctx.attrs.maxSegmentLength !== null ? { maxSegmentLength: ctx.attrs.maxSegmentLength } : {}),
    }),
  ],
  flops: (attrs, [data]) => scanSteps(data![0]!, attrs.maxSegmentLength ?? data![0]!) * product(data!),
});
