/**
 * @dynn/sorted-net: many nested sub-networks in one model. Width per layer, depth per stage and
 * kernel size are run options chosen per call; a narrower or shallower sub-network computes less.
 * The ops `sorted-net.Nested` and `sorted-net.Residual`, the passes `sorted-net.nest` and
 * `sorted-net.export`, sorted training and batch-norm recalibration. See the package README.
 */
export type {
  PgdOptions,
  RobustDistillationOptions,
  Robustness,
  RobustnessOptions,
  RobustWindows,
  RobustWindowsOptions,
} from './adversarial.js';
export {
  evaluateRobustness,
  pgdAttack,
  robustDistillationObjective,
  robustDistillationWindows,
} from './adversarial.js';
export type { CalibrateOptions } from './calibrate.js';
export { calibrateBatchNorm } from './calibrate.js';
export type { DepthStage, ElasticLayer, Nesting, WidthKnob } from './describe-nesting.js';
export { checkSubNetwork, describeNesting } from './describe-nesting.js';
export type { ExportOptions } from './export-sub-network.js';
export { exportPass, exportSubNetwork } from './export-sub-network.js';
export type { ImportanceCriterion } from './importance.js';
export { channelImportance, importanceOrders } from './importance.js';
export type { LatencyEntry, LatencyNode, LatencyTable, LatencyTableOptions } from './latency-table.js';
export { measureLatencyTable, predictLatency, subNetworkFlops } from './latency-table.js';
export type { NestOptions } from './nest.js';
export { knobName, nest, nestPass, SORTED_NET_PLUGIN } from './nest.js';
export type { NestModelOptions } from './nest-model.js';
export { nestModel } from './nest-model.js';
export type { ElasticKernel, NestedAttrs, NestedSpace } from './nested-op.js';
export { NESTED_OP, nestedOp } from './nested-op.js';
export type { SubNetwork } from './options.js';
export {
  activeChannels,
  readSubNetwork,
  SORTED_NET_OPTIONS,
  subNetworkKey,
  subNetworkOptions,
} from './options.js';
export type { SortedNetOptions } from './plugin.js';
export { sortedNet } from './plugin.js';
export type { ResidualCnnOptions } from './residual-cnn.js';
export { residualCnnGraph } from './residual-cnn.js';
export type { ResidualAttrs } from './residual-op.js';
export { RESIDUAL_OP, residualOp } from './residual-op.js';
export type { ParetoOptions, SearchBudget, SearchOptions, SearchPoint, SearchResult } from './search.js';
export { paretoFront, searchSubNetwork } from './search.js';
export type {
  FitSortedOptions,
  SamplingStrategy,
  SortedObjectiveOptions,
  SortedTrainingOptions,
  SubNetworkSpace,
} from './training.js';
export { fitSorted, sortedObjective, sortedWindows } from './training.js';
