export type { BackendName, UseBackendOptions } from './backend.js';
export { activeBackend, BACKEND_NAMES, useBackend } from './backend.js';
export type { DynnErrorCode, DynnErrorContext } from './errors.js';
export { DynnError, isDynnError } from './errors.js';
export type { Rng } from './random.js';
export { createRng } from './random.js';
