import type { OpDef } from '../../op.js';
import { gruCell } from './gru-cell.js';
import { lstmCell } from './lstm-cell.js';
import { multiHeadAttention } from './multi-head-attention.js';
import { positionEmbedding } from './position-embedding.js';
import { scanOp } from './scan.js';
import { timeStep } from './time-step.js';

export { batchMatMul } from './batched-matmul.js';
export type { GruCellAttrs } from './gru-cell.js';
export { gruCell } from './gru-cell.js';
export type { LstmCellAttrs } from './lstm-cell.js';
export { lstmCell } from './lstm-cell.js';
export type { MultiHeadAttentionAttrs } from './multi-head-attention.js';
export { kerasGlorot, multiHeadAttention } from './multi-head-attention.js';
export type { PositionEmbeddingAttrs } from './position-embedding.js';
export { positionEmbedding } from './position-embedding.js';
export type { ScanAttrs } from './scan.js';
export { scanOp } from './scan.js';
export type { TimeStepAttrs } from './time-step.js';
export { timeStep } from './time-step.js';

/** The sequence ops of the `core` domain: attention, recurrent cells, positions, scans. */
// biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
export const sequenceOps: OpDef<any>[] = [
  multiHeadAttention,
  gruCell,
  lstmCell,
  positionEmbedding,
  timeStep,
  scanOp,
];
