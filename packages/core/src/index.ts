/**
 * `@dynn/core`: the graph IR and its builder, ops, passes and plugins, the dynamic executor
 * with row sets and compute reports, training, model files, Keras import and backends.
 *
 * @packageDocumentation
 */
export type { BackendName, UseBackendOptions } from './backend.js';
export { activeBackend, BACKEND_NAMES, ensureBackend, useBackend } from './backend.js';
export type { AddOptions } from './builder.js';
export { GraphBuilder } from './builder.js';
export type {
  ChannelAxis,
  ChannelTensor,
  OpChannels,
} from './channel-axes.js';
export {
  channelOfPosition,
  elementwiseChannels,
  inputTensor,
  outputTensor,
  paramTensor,
  stateTensor,
} from './channel-axes.js';
export type {
  ChannelAnalysis,
  ChannelBarrier,
  ChannelGroup,
  ChannelMember,
  ChannelSpaceMember,
} from './channel-groups.js';
export { channelGroups } from './channel-groups.js';
export type { CompiledGraph, CompiledNode, CompiledSubGraph, NodeTensor } from './compile.js';
export { compileGraph, inferNodeOutputs, inferShapes, nodeTensorSpecs } from './compile.js';
export { DerivedTensors } from './derived-tensors.js';
export type { CapacityPolicy, CapacityResult, Grouping } from './dispatch.js';
export { applyCapacity, capacityFor, groupByIds } from './dispatch.js';
export type { DynnErrorCode, DynnErrorContext } from './errors.js';
export { DynnError, isDynnError } from './errors.js';
export type {
  ComputeReport,
  NodeReport,
  RunRequest,
  RunResult,
  TapedForwardOptions,
  TrainingForward,
} from './executor.js';
export { applyStateUpdates, decideForTraining, forwardForTraining } from './executor.js';
export type { ExtractOptions } from './extract-sub-network.js';
export { extractPass, extractSubNetwork } from './extract-sub-network.js';
export type { FoldBatchNormOptions } from './fold-batch-norm.js';
export { foldBatchNorm, foldBatchNormPass } from './fold-batch-norm.js';
export { ensureGradients } from './gradients.js';
export type { TensorOrMap } from './host-batches.js';
export { HostBatches } from './host-batches.js';
export type { HostOptimizer, HostReadOptions, HostRows, HostTableOptions } from './host-table.js';
export { HostTable } from './host-table.js';
export { initTensor } from './initializers.js';
export type { Decisions, NodeDoneEvent, NodeEvent, NodeHook } from './interpreter.js';
export * from './io/index.js';
export type {
  Attrs,
  AttrValue,
  Dim,
  DType,
  Graph,
  GraphNode,
  Initializer,
  SubGraph,
  TensorInfo,
  ValueInfo,
} from './ir.js';
export { BATCH, SPEC_VERSION, splitOpType } from './ir.js';
export type { ImportLayersModelOptions, LayersConversion, LayersModelSource } from './keras/index.js';
export { convertLayersTopology, importLayersModel, SUPPORTED_LAYER_CLASSES } from './keras/index.js';
export type { LossFunction, LossName } from './losses.js';
export { correctCount, lossFunction } from './losses.js';
export { maskChannels, maskChannelsPass } from './mask-channels.js';
export type { CreateModelOptions, NodeCost } from './model.js';
export { createModel, Model } from './model.js';
export type {
  AttrKind,
  AttrSchema,
  AttrSpec,
  ComputeRecord,
  FlopsContext,
  InferContext,
  OpContext,
  OpDef,
  OpResult,
  OutputInfo,
  ParamSpec,
  Retirement,
  RowSet,
  RunGraphOptions,
  RunOptions,
  SessionAccess,
  SessionStateSpec,
  SessionValue,
} from './op.js';
export { defineOp, resolveAttrs } from './op.js';
export type { AuxLoss, OpContextInit, OpSideEffects } from './op-context.js';
export { createOpContext } from './op-context.js';
export type { ActivationName } from './ops/basic/index.js';
export {
  ACTIVATIONS,
  activationAttr,
  applyActivation,
  gatherRows,
  linear,
  matMulFastGrad,
  takeRows,
} from './ops/basic/index.js';
export { coreOps, corePasses, corePlugin } from './ops/index.js';
export type { ScanAttrs } from './ops/sequence/index.js';
export { batchMatMul, kerasGlorot, scanOp } from './ops/sequence/index.js';
export type { SegmentAttrs, SegmentMaxAttrs, SegmentMaxOptions, SegmentOptions } from './ops/sparse/index.js';
export { scatterAddRows, segmentMax, segmentMean, segmentSum } from './ops/sparse/index.js';
export type { PassContext, PassDef, PassResult, Plugin, WeightedGraph } from './plugin.js';
export { definePass, definePlugin } from './plugin.js';
export type { Rng } from './random.js';
export { createRng, seedFor, shuffledIndices } from './random.js';
export type { ChannelGroupOptions } from './remove-channels.js';
export { removeChannels, removeChannelsPass } from './remove-channels.js';
export type { ReorderChannelsOptions } from './reorder-channels.js';
export { reorderChannels, reorderChannelsPass } from './reorder-channels.js';
export { applyPass, runPass } from './run-pass.js';
export type { Runtime, RuntimeOptions } from './runtime.js';
export { createRuntime } from './runtime.js';
export { Session } from './session.js';
export type { SplitLayerOptions } from './split-layer.js';
export { splitLayer, splitLayerPass } from './split-layer.js';
export type { AddStateVariantsOptions, CoreRunOptions } from './state-variants.js';
export { addStateVariantsPass, STATE_VARIANTS_ATTR, selectedStateVariant } from './state-variants.js';
export { stopGradient } from './stop-gradient.js';
export type { TensorOwner } from './tensor-owners.js';
export { requiredTensors, tensorOwners } from './tensor-owners.js';

export type {
  Dataset,
  EpochLogs,
  EvaluateOptions,
  FitCallbacks,
  FitOptions,
  GradientHook,
  History,
  Objective,
  ObjectiveContext,
  StepInfo,
  StepResult,
  TrainerOptions,
  TrainingWindow,
} from './train.js';
export { cosineDecay, evaluate, fit, Trainer } from './train.js';
export { addTensor, validateGraph } from './validate.js';
