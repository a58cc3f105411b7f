import type { OpDef } from '../../op.js';
import { avgPool2dOp } from './avg-pool2d.js';
import { batchNormOp } from './batch-norm.js';
import { conv2dOp } from './conv2d.js';
import { depthwiseConv2dOp } from './depthwise-conv2d.js';
import { globalAvgPool2dOp } from './global-avg-pool2d.js';
import { globalMaxPool2dOp } from './global-max-pool2d.js';
import { maxPool2dOp } from './max-pool2d.js';
import { separableConv2dOp } from './separable-conv2d.js';
import { zeroPadding2dOp } from './zero-padding2d.js';

export { avgPool2dOp } from './avg-pool2d.js';
export type { BatchNormAttrs, BatchNormTrainingResult } from './batch-norm.js';
export { batchNormOp, batchNormTraining } from './batch-norm.js';
export type { Conv2DGeometry, PaddingMode, Pair, SpatialPadding, WindowOptions } from './conv-geometry.js';
export {
  axisPadding,
  conv2dGeometry,
  convOutputDim,
  convOutputSize,
  effectiveKernelSize,
} from './conv-geometry.js';
export type { ConvOptions } from './conv-gradients.js';
export {
  biasAddFastGrad,
  conv2dFastGrad,
  conv2dFilterGrad,
  conv2dInputGrad,
  depthwiseConv2dFastGrad,
  depthwiseConv2dFilterGrad,
  depthwiseConv2dInputGrad,
} from './conv-gradients.js';
export type { Conv2DAttrs } from './conv2d.js';
export { conv2dOp } from './conv2d.js';
export type { DepthwiseConv2DAttrs } from './depthwise-conv2d.js';
export { depthwiseConv2dOp } from './depthwise-conv2d.js';
export { globalAvgPool2dOp } from './global-avg-pool2d.js';
export { globalMaxPool2dOp } from './global-max-pool2d.js';
export { maxPool2dOp } from './max-pool2d.js';
export type { GlobalPoolAttrs, PoolAttrs } from './pool-window.js';
export type { SeparableConv2DAttrs } from './separable-conv2d.js';
export { separableConv2dOp } from './separable-conv2d.js';
export type { ZeroPadding2DAttrs } from './zero-padding2d.js';
export { zeroPadding2dOp } from './zero-padding2d.js';

/** The spatial (NHWC image) ops of the `core` domain. */
// biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
export const spatialOps: OpDef<any>[] = [
  conv2dOp,
  depthwiseConv2dOp,
  separableConv2dOp,
  maxPool2dOp,
  avgPool2dOp,
  globalAvgPool2dOp,
  globalMaxPool2dOp,
  zeroPadding2dOp,
  batchNormOp,
];
