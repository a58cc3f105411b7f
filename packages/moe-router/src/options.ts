import { DynnError, type RunOptions } from '@dynn/core';

/** The key under which MoE layers read their run options: `model.run(x, { options: { 'moe-router': ... } })`. */
export const MOE_ROUTER_OPTIONS = 'moe-router';

/**
 * Deployment choices of MoE layers, per call (no rebuild). Inference only, except `k`.
 *
 * - `k`: experts per token (or per token on average, for expert choice) instead of the layer's
 *   `k`, e.g. every expert (`k` = experts) to check a MoEfied layer against the dense one, or
 *   fewer for a cheaper call. At most the layer's expert count.
 * - `capacityFactor`: the inference capacity instead of the layer's `evalCapacityFactor`;
 *   0 runs dropless (no token is dropped at inference however unbalanced the batch).
 * - `recordAssignment`: record in the compute report which experts computed each token
 *   (`assignment`, one list per token), for plots and live views.
 */
export interface MoeRunOptions {
  /** Experts per token for this call (default: the layer's `k`). */
  k?: number;
  /** Inference capacity factor for this call; 0: no limit (default: the layer's). */
  capacityFactor?: number;
  /** Record each token's experts in the report (default false). */
  recordAssignment?: boolean;
}

const KNOWN = new Set(['k', 'capacityFactor', 'recordAssignment']);

function invalid(field: string, problem: string): DynnError {
  return new DynnError('INVALID_OPTION', `Run option '${MOE_ROUTER_OPTIONS}'.${field} ${problem}.`);
}

/**
 * Reads and checks the MoE run options of a call (`options['moe-router']`). Throws an
 * `INVALID_OPTION` {@link DynnError} naming the bad field.
 */
export function readMoeOptions(options: RunOptions): MoeRunOptions {
  const given = options[MOE_ROUTER_OPTIONS];
  if (given === undefined) return {};
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new DynnError(
      'INVALID_OPTION',
      `Run option '${MOE_ROUTER_OPTIONS}' must be an object such as { capacityFactor: 0 }, got ${JSON.stringify(given)}.`,
    );
  }
  const record = given as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!KNOWN.has(key)) throw invalid(key, `is not an option; use ${[...KNOWN].join(', ')}`);
  }
  const { k, capacityFactor, recordAssignment } = record;
  if (k !== undefined && !(typeof k === 'number' && Number.isInteger(k) && k >= 1)) {
    throw invalid('k', `must be an integer >= 1, got ${JSON.stringify(k)}`);
  }
  if (
    capacityFactor !== undefined &&
    !(typeof capacityFactor === 'number' && Number.isFinite(capacityFactor) && capacityFactor >= 0)
  ) {
    throw invalid(
      'capacityFactor',
      `must be a number >= 0 (0: no limit), got ${JSON.stringify(capacityFactor)}`,
    );
  }
  if (recordAssignment !== undefined && typeof recordAssignment !== 'boolean') {
    throw invalid('recordAssignment', `must be true or false, got ${JSON.stringify(recordAssignment)}`);
  }
  return record as MoeRunOptions;
}

/** Run options for MoE layers, to pass as `model.run(x, { options: moeOptions({ capacityFactor: 0 }) })`. */
export function moeOptions(options: MoeRunOptions): RunOptions {
  return { [MOE_ROUTER_OPTIONS]: readMoeOptions({ [MOE_ROUTER_OPTIONS]: options }) };
}
