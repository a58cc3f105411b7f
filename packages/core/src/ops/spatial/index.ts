import type { OpDef } from '../../op.js';

// biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
export const spatialOps: OpDef<any>[] = [];
