import type * as tf from '@tensorflow/tfjs-core';
import type { OpChannels } from '../../channel-axes.js';
import type { ValueInfo } from '../../ir.js';
import type { AttrSchema, OutputInfo } from '../../op.js';
import { formatShape } from '../basic/shape-helpers.js';
import { checkIndices, checkSameDim, rowChannels } from './sparse-helpers.js';

/**
 * Attributes of the segment reductions (`core.SegmentSum`, `core.SegmentMean`,
 * `core.SegmentMax`).
 */
export type SegmentAttrs = {
  /**
   * The number of segments, or null to take it from the first dimension of the op's third input
   * (a data-dependent count, such as the rows of another value). Exactly one of the two is given.
   */
  numSegments: number | null;
  /** True when the segment ids are ascending: a promise that lets an op skip work. */
  sorted: boolean;
};

/** Options of the segment reductions `segmentMean` and `segmentMax`. */
export interface SegmentOptions {
  /**
   * The segment ids are ascending (default false). A promise, not checked (that would need a
   * readback): with unsorted ids a sorted reduction gives wrong results.
   */
  sorted?: boolean;
}

/** The attribute schema shared by the segment reductions. */
export const segmentAttrSchema: AttrSchema = {
  numSegments: {
    kind: 'int',
    min: 0,
    default: null,
    doc: 'number of segments; null: the first dimension of the third input',
  },
  sorted: {
    kind: 'bool',
    default: false,
    doc: 'segment ids are ascending (a promise, not checked: unsorted ids then give wrong results)',
  },
};

/** Inputs of a segment reduction: data and ids, then optionally a value giving the segment count. */
export const segmentInputs = { min: 2, max: 3 };

/**
 * Output of a segment reduction: `[segments, ...data.shape.slice(1)]`, float32. Checks dtypes
 * (float32 data, int32 ids), ranks (data >= 1, ids 1), one id per data row, and that exactly one
 * of `numSegments` and the third input gives the segment count.
 */
export function inferSegmentShape(
  opName: string,
  attrs: SegmentAttrs,
  [data, ids, like]: readonly ValueInfo[],
): OutputInfo[] {
  if (data!.dtype !== 'float32') {
    throw new Error(`${opName} needs float32 data, got ${data!.dtype}${formatShape(data!.shape)}`);
  }
  if (data!.shape.length < 1) throw new Error(`${opName} needs data of rank >= 1, got a scalar`);
  checkIndices(opName, 'segment ids', ids!);
  if (ids!.shape.length !== 1) {
    throw new Error(`${opName} needs segment ids of rank 1, got ${formatShape(ids!.shape)}`);
  }
  checkSameDim(
    opName,
    ids!.shape[0]!,
    data!.shape[0]!,
    `segment ids ${formatShape(ids!.shape)} need one id per row of data ${formatShape(data!.shape)}`,
  );
  let segments: number | string;
  if (like !== undefined) {
    if (attrs.numSegments !== null) {
      throw new Error(
        `${opName} takes the number of segments from numSegments or from a third input, not both ` +
          `(numSegments ${attrs.numSegments}, third input ${formatShape(like.shape)})`,
      );
    }
    if (like.shape.length < 1) {
      throw new Error(
        `${opName}'s third input gives the number of segments by its first dimension; got a scalar`,
      );
    }
    segments = like.shape[0]!;
  } else {
    if (attrs.numSegments === null) {
      throw new Error(
        `${opName} needs the number of segments: set numSegments, or pass a third input whose first dimension is it`,
      );
    }
    segments = attrs.numSegments;
  }
  return [{ shape: [segments, ...data!.shape.slice(1)], dtype: 'float32' }];
}

/** The data's row axes tie to the output's: the segment reductions move rows, not channels. */
export function segmentChannels(inputs: readonly ValueInfo[], outputs: readonly ValueInfo[]): OpChannels {
  return rowChannels(inputs, [0], outputs[0]!);
}

/** The number of segments of one call: the attribute, or the third input's first dimension. */
export function segmentCount(attrs: SegmentAttrs, inputs: readonly tf.Tensor[]): number {
  return inputs[2] !== undefined ? inputs[2].shape[0]! : (attrs.numSegments as number);
}

/**
 * Checks the tensors of a segment reduction at run time (no readback): float32 data of rank >= 1,
 * int32 ids of rank 1, one per data row, and a non-negative integer segment count. The values of
 * the ids are not read: ids outside `[0, numSegments)` make the cpu backend throw and are dropped
 * or clamped elsewhere.
 */
export function checkSegmentTensors(
  opName: string,
  data: tf.Tensor,
  ids: tf.Tensor,
  numSegments: number,
): void {
  if (data.dtype !== 'float32') {
    throw new Error(`${opName} needs float32 data, got ${data.dtype}${formatShape(data.shape)}`);
  }
  if (data.rank < 1) throw new Error(`${opName} needs data of rank >= 1, got a scalar`);
  checkIndices(opName, 'segment ids', ids);
  if (ids.rank !== 1 || ids.shape[0] !== data.shape[0]) {
    throw new Error(
      `${opName} needs one segment id per row of data ${formatShape(data.shape)}, got ids ${formatShape(ids.shape)}`,
    );
  }
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`${opName} needs a non-negative integer number of segments, got ${numSegments}`);
  }
}
