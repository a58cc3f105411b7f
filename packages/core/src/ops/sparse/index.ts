import type { OpDef } from '../../op.js';
import { gatherOp } from './gather.js';
import { scatterAddOp } from './scatter-add.js';
import { segmentMaxOp } from './segment-max.js';
import { segmentMeanOp } from './segment-mean.js';
import { segmentSumOp } from './segment-sum.js';

export { gatherOp } from './gather.js';
export { scatterAddOp, scatterAddRows } from './scatter-add.js';
export type { SegmentAttrs, SegmentOptions } from './segment-attrs.js';
export type { SegmentMaxAttrs, SegmentMaxOptions } from './segment-max.js';
export { segmentMax, segmentMaxOp } from './segment-max.js';
export { segmentMean, segmentMeanOp } from './segment-mean.js';
export { segmentSum, segmentSumOp } from './segment-sum.js';

/**
 * The sparse ops of the `core` domain: row gathers and scatter-adds, segment sums, means and
 * maxima (message passing, mixture-of-experts dispatch), on every backend with gradients.
 */
// biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
export const sparseOps: OpDef<any>[] = [gatherOp, scatterAddOp, segmentSumOp, segmentMeanOp, segmentMaxOp];
