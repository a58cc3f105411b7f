/**
 * @dynn/early-exit: multi-exit networks whose confident rows stop computing. The op
 * `early-exit.Exit`, the passes `early-exit.insert-exits`, `early-exit.remove-exits` and
 * `early-exit.last-position` (the serving form of sequence models trained on every position),
 * multi-exit training objectives and budget calibration. See the package README.
 */

/** Re-exported from `@dynn/core`, where it now lives. */
export { stopGradient } from '@dynn/core';
export type { AddExitsOptions } from './add-exits.js';
export { addExits, lastPositionModel, staticModel } from './add-exits.js';
export type { ExitSweep, OperatingConstraint, ParetoPoint, SweepOptions } from './calibration.js';
export { paretoFront, pickOperatingPoint, runOptionsFor, sweepExits } from './calibration.js';
export type { ExitAttrs, ExitOutputActivation } from './exit.js';
export { EARLY_EXIT_PLUGIN, EXIT_OP, EXIT_OUTPUT, exitDecision, exitOp } from './exit.js';
export type { ExitHeadKind, ExitPooling, ExitPositions } from './exit-head.js';
export { EXIT_HEADS, EXIT_POOLINGS } from './exit-head.js';
export type { ExitInfo } from './exits.js';
export { describeExits, exitOutputsOf, exitParamFilter, removeExits, removeExitsPass } from './exits.js';
export type { InsertExitsOptions } from './insert-exits.js';
export { insertExits, insertExitsPass } from './insert-exits.js';
export { lastPositionExits, lastPositionPass } from './last-position.js';
export type { EarlyExitRunOptions, ExitCriterion, ResolvedExitOptions } from './options.js';
export { EARLY_EXIT_OPTIONS, EXIT_CRITERIA, exitRunOptions, readExitOptions } from './options.js';
export type { ParetoSvgOptions } from './pareto-svg.js';
export { paretoSvg } from './pareto-svg.js';
export { earlyExit } from './plugin.js';
export type { ExitDepth, SlowdownOptions, SlowdownResult } from './slowdown.js';
export { slowdownAttack } from './slowdown.js';
export type { DistillationOptions, MultiExitObjectiveOptions, ObjectiveFunction } from './training.js';
export { multiExitObjective } from './training.js';
