import type { OpDef } from '../../op.js';
import { activationOp } from './activation.js';
import { addOp } from './add.js';
import { concatOp } from './concat.js';
import { denseOp } from './dense.js';
import { dropoutOp } from './dropout.js';
import { embeddingOp } from './embedding.js';
import { flattenOp } from './flatten.js';
import { identityOp } from './identity.js';
import { layerNormOp } from './layer-norm.js';
import { multiplyOp } from './multiply.js';
import { reshapeOp } from './reshape.js';

export type { ActivationAttrs, ActivationName } from './activation.js';
export { ACTIVATIONS, activationAttr, activationFlops, activationOp, applyActivation } from './activation.js';
export { addOp } from './add.js';
export { broadcastShapes } from './broadcast.js';
export type { ConcatAttrs } from './concat.js';
export { concatOp } from './concat.js';
export type { DenseAttrs } from './dense.js';
export { denseOp } from './dense.js';
export type { DropoutAttrs } from './dropout.js';
export { dropoutOp } from './dropout.js';
export type { EmbeddingAttrs } from './embedding.js';
export { embeddingOp } from './embedding.js';
export { flattenOp } from './flatten.js';
export { gatherRows } from './gather-rows.js';
export { identityOp } from './identity.js';
export type { LayerNormAttrs } from './layer-norm.js';
export { layerNormOp } from './layer-norm.js';
export { linear, matMulFastGrad } from './linear.js';
export { multiplyOp } from './multiply.js';
export type { ReshapeAttrs } from './reshape.js';
export { reshapeOp } from './reshape.js';
export { withSavedGrad } from './saved-grad.js';
export { takeRows } from './tensor-rows.js';

/** The basic ops of the `core` domain: dense, activations, elementwise, shape and embedding ops. */
// biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
export const basicOps: OpDef<any>[] = [
  denseOp,
  activationOp,
  addOp,
  multiplyOp,
  concatOp,
  reshapeOp,
  flattenOp,
  dropoutOp,
  layerNormOp,
  embeddingOp,
  identityOp,
];
