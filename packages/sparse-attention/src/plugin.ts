import { definePlugin, type Plugin } from '@dynn/core';
import { SPARSE_ATTENTION_PLUGIN } from './identity.js';
import { sparseAttentionOp } from './sparse-attention-op.js';

/**
 * The sparse-attention plugin: the op `sparse-attention.SparseAttention` (self-attention over the
 * pairs a JSON pattern keeps, computed block by block, with optional routing heads). Plain data:
 * pass it to `createRuntime({ plugins: [sparseAttention()] })`.
 */
export function sparseAttention(): Plugin {
  return definePlugin({ ...SPARSE_ATTENTION_PLUGIN, ops: [sparseAttentionOp] });
}
