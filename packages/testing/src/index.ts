/**
 * `@dynn/testing`: vitest helpers for dynn and its plugins: the backend matrix, per-backend
 * closeness, leak guards, seeded tensors, an op harness and finite-difference gradient checks.
 *
 * @packageDocumentation
 */
export { activateBackend, describeEachBackend, inBrowser, isGpuBackend, testBackends } from './backends.js';
export type { RemovalCheck, RemovalCheckOptions } from './channel-removal.js';
export { expectRemovalMatchesMask } from './channel-removal.js';
export type { CloseOptions } from './closeness.js';
export { expectClose, toleranceFor } from './closeness.js';
export type { MobileNetV2LikeOptions } from './keras-models.js';
export { mobileNetV2Like } from './keras-models.js';
export { expectNoLeaks, guardLeaks } from './leak-guard.js';
export type { GradientCheckOptions, OpCase } from './op-harness.js';
export { checkOpGradients, inputInfos, opParams, runOp } from './op-harness.js';
export type { SeededOptions } from './random-tensors.js';
export { seededInts, seededNormal, seededUniform } from './random-tensors.js';
export type { RouteDecision, RouteRowsAttrs } from './route-rows.js';
export { routeRowsOp, routingPlugin } from './route-rows.js';
