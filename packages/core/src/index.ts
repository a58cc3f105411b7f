export type { BackendName, UseBackendOptions } from './backend.js';
export { activeBackend, BACKEND_NAMES, useBackend } from './backend.js';
export type { DynnErrorCode, DynnErrorContext } from './errors.js';
export { DynnError, isDynnError } from './errors.js';
export { initTensor } from './initializers.js';
export type {
  Attrs,
  AttrValue,
  Dim,
  DType,
  Graph,
  GraphNode,
  Initializer,
  TensorInfo,
  ValueInfo,
} from './ir.js';
export { BATCH, SPEC_VERSION, splitOpType } from './ir.js';
export type {
  AttrKind,
  AttrSchema,
  AttrSpec,
  OpContext,
  OpDef,
  OpResult,
  OutputInfo,
  ParamSpec,
  Retirement,
  RowSet,
  RunOptions,
} from './op.js';
export { defineOp, resolveAttrs } from './op.js';
export type { AuxLoss, OpContextInit, OpSideEffects } from './op-context.js';
export { createOpContext } from './op-context.js';
export { coreOps, corePlugin } from './ops/index.js';
export type { PassDef, Plugin } from './plugin.js';
export { definePass, definePlugin } from './plugin.js';
export type { Rng } from './random.js';
export { createRng } from './random.js';
export type { Runtime, RuntimeOptions } from './runtime.js';
export { createRuntime } from './runtime.js';
