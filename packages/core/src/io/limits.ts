import { DynnError } from '../errors.js';

/**
 * Size limits applied while loading a model file, before anything is allocated. A file over any
 * of them is refused with a `MODEL_FILE` error naming the limit; raise it through
 * `loadModel(runtime, url, { limits: { ... } })` for a file you trust.
 */
export interface LoadLimits {
  /** Most bytes model.json may have. */
  maxModelJsonBytes: number;
  /** Deepest nesting of arrays and objects in model.json. */
  maxDepth: number;
  /** Most entries in any one list: nodes, graph inputs and outputs, tensors, shard files, dimensions. */
  maxListLength: number;
  /** Longest name (node, value, tensor, op, symbolic dimension) or string attribute, in characters. */
  maxNameLength: number;
  /** Most dimensions of one shape. */
  maxRank: number;
  /** Most elements of one weight tensor. */
  maxTensorElements: number;
  /** Most bytes of all weights together. */
  maxWeightBytes: number;
}

/** The limits {@link loadModel} applies unless told otherwise. */
export const DEFAULT_LOAD_LIMITS: Readonly<LoadLimits> = Object.freeze({
  maxModelJsonBytes: 64 * 1024 * 1024,
  maxDepth: 64,
  maxListLength: 100_000,
  maxNameLength: 1024,
  maxRank: 16,
  maxTensorElements: 2 ** 28,
  maxWeightBytes: 2 * 1024 * 1024 * 1024,
});

/** Limits high enough never to refuse a graph held in memory: used to check a graph before saving it. */
export const UNBOUNDED_LIMITS: Readonly<LoadLimits> = Object.freeze({
  maxModelJsonBytes: Number.POSITIVE_INFINITY,
  maxDepth: Number.POSITIVE_INFINITY,
  maxListLength: Number.POSITIVE_INFINITY,
  maxNameLength: Number.POSITIVE_INFINITY,
  maxRank: Number.POSITIVE_INFINITY,
  maxTensorElements: Number.POSITIVE_INFINITY,
  maxWeightBytes: Number.POSITIVE_INFINITY,
});

/** {@link DEFAULT_LOAD_LIMITS} overridden by `given`; throws `INVALID_OPTION` on a limit that is not a positive number. */
export function resolveLimits(given: Partial<LoadLimits> = {}): LoadLimits {
  const limits: LoadLimits = { ...DEFAULT_LOAD_LIMITS };
  for (const [key, value] of Object.entries(given)) {
    if (!Object.hasOwn(DEFAULT_LOAD_LIMITS, key)) {
      throw new DynnError(
        'INVALID_OPTION',
        `Unknown load limit '${key}'. Known limits: ${Object.keys(DEFAULT_LOAD_LIMITS).join(', ')}.`,
      );
    }
    if (value === undefined) continue;
    if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) {
      throw new DynnError(
        'INVALID_OPTION',
        `Load limit '${key}' must be a positive number, got ${String(value)}.`,
      );
    }
    limits[key as keyof LoadLimits] = value;
  }
  return limits;
}
