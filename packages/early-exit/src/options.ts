import { DynnError, type RunOptions } from '@dynn/core';

/** The key under which exits read their run options: `model.run(x, { options: { 'early-exit': ... } })`. */
export const EARLY_EXIT_OPTIONS = 'early-exit';

/** When a row leaves at an exit. */
export type ExitCriterion = 'none' | 'maxProb' | 'entropy' | 'patience' | 'learned';

/** Every {@link ExitCriterion}, in documentation order. */
export const EXIT_CRITERIA: readonly ExitCriterion[] = ['none', 'maxProb', 'entropy', 'patience', 'learned'];

/**
 * Run options of the exits (deployment choices: changing them needs no rebuild).
 *
 * - `none` (the default): no row leaves early; outputs equal the model without exits.
 * - `maxProb` (BranchyNet): a row leaves when its largest softmax probability is >= the threshold.
 * - `entropy` (DeeBERT): a row leaves when the entropy of its softmax, divided by log(classes) so
 *   it lies in [0, 1], is <= the threshold.
 * - `patience` (PABEE): a row leaves once `patience` consecutive exits agreed with the exit before
 *   them, i.e. `patience + 1` exits in a row predicted the same class.
 * - `learned` (CALM): a row leaves when the exit's learned halting probability is >= the threshold
 *   (exits built with `halting: true`).
 */
export interface EarlyExitRunOptions {
  /** When a row leaves (default `none`: never). */
  criterion?: ExitCriterion;
  /** One threshold for every exit, or one per exit index (`maxProb`, `entropy`, `learned`). */
  thresholds?: number | readonly number[];
  /** Agreements needed before a row leaves (`patience`): an integer >= 1. */
  patience?: number;
}

/** Validated exit run options. */
export type ResolvedExitOptions =
  | {
      /** No row leaves early. */
      criterion: 'none';
    }
  | {
      /** A thresholded criterion. */
      criterion: 'maxProb' | 'entropy' | 'learned';
      /** One threshold for every exit, or one per exit index. */
      thresholds: number | readonly number[];
    }
  | {
      /** Agreement of consecutive exits. */
      criterion: 'patience';
      /** Agreements needed before a row leaves. */
      patience: number;
    };

const KNOWN_KEYS = new Set(['criterion', 'thresholds', 'patience']);

function invalid(field: string, problem: string): DynnError {
  return new DynnError('INVALID_OPTION', `Run option '${EARLY_EXIT_OPTIONS}'.${field} ${problem}.`);
}

/**
 * Reads and checks the exit run options of a run. Absent options mean criterion `none`. Throws an
 * `INVALID_OPTION` {@link DynnError} naming the bad field.
 */
export function readExitOptions(options: RunOptions): ResolvedExitOptions {
  const given = options[EARLY_EXIT_OPTIONS];
  if (given === undefined) return { criterion: 'none' };
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new DynnError(
      'INVALID_OPTION',
      `Run option '${EARLY_EXIT_OPTIONS}' must be an object such as { criterion: 'maxProb', thresholds: 0.9 }.`,
    );
  }
  const raw = given as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!KNOWN_KEYS.has(key)) throw invalid(key, `is unknown; the fields are ${[...KNOWN_KEYS].join(', ')}`);
  }
  const criterion = raw.criterion ?? 'none';
  if (typeof criterion !== 'string' || !(EXIT_CRITERIA as readonly string[]).includes(criterion)) {
    throw invalid(
      'criterion',
      `is ${JSON.stringify(criterion)}; expected one of ${EXIT_CRITERIA.join(', ')}`,
    );
  }
  switch (criterion as ExitCriterion) {
    case 'none':
      return { criterion: 'none' };
    case 'patience': {
      const patience = raw.patience;
      if (typeof patience !== 'number' || !Number.isInteger(patience) || patience < 1) {
        throw invalid(
          'patience',
          `must be an integer >= 1 for criterion 'patience', got ${JSON.stringify(patience)}`,
        );
      }
      return { criterion: 'patience', patience };
    }
    default: {
      const thresholds = raw.thresholds;
      if (typeof thresholds === 'number') {
        if (!Number.isFinite(thresholds))
          throw invalid('thresholds', `must be a finite number, got ${thresholds}`);
      } else if (Array.isArray(thresholds) && thresholds.length > 0) {
        thresholds.forEach((t, i) => {
          if (typeof t !== 'number' || !Number.isFinite(t)) {
            throw invalid(`thresholds[${i}]`, `must be a finite number, got ${JSON.stringify(t)}`);
          }
        });
      } else {
        throw invalid(
          'thresholds',
          `must be a number or a non-empty array of numbers (one per exit) for criterion '${criterion}'`,
        );
      }
      return {
        criterion: criterion as 'maxProb' | 'entropy' | 'learned',
        thresholds: thresholds as number | number[],
      };
    }
  }
}

/** The threshold of exit `index`; throws `INVALID_OPTION` when a per-exit list is too short. */
export function thresholdFor(thresholds: number | readonly number[], index: number): number {
  if (typeof thresholds === 'number') return thresholds;
  const value = thresholds[index];
  if (value === undefined) {
    throw invalid('thresholds', `has ${thresholds.length} entries, but exit ${index} needs one`);
  }
  return value;
}

/**
 * Wraps exit run options under their key, for `model.run(x, { options: exitRunOptions(...) })`,
 * `evaluate` and `predict`.
 *
 * @example
 * ```ts
 * const { outputs } = await model.run(x, {
 *   outputs: ['logits'],
 *   options: exitRunOptions({ criterion: 'maxProb', thresholds: 0.9 }),
 * });
 * ```
 */
export function exitRunOptions(options: EarlyExitRunOptions): RunOptions {
  return { [EARLY_EXIT_OPTIONS]: options };
}
