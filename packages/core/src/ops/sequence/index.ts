import type { OpDef } from '../../op.js';
import { gruCell } from './gru-cell.js';
import { lstmCell } from './lstm-cell.js';
import { multiHeadAttention } from './multi-head-attention.js';

export { batchMatMul } from './batched-matmul.js';
export type { GruCellAttrs } from './gru-cell.js';
export { gruCell } from './gru-cell.js';
export type { LstmCellAttrs } from './lstm-cell.js';
export { lstmCell } from './lstm-cell.js';
export type { MultiHeadAttentionAttrs } from './multi-head-attention.js';
export { multiHeadAttention } from './multi-head-attention.js';

/** The sequence ops of the `core` domain: attention and recurrent cells. */
// biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
export const sequenceOps: OpDef<any>[] = [multiHeadAttention, gruCell, lstmCell];
