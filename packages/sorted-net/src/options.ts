import { DynnError, type RunOptions } from '@dynn/core';

/** The key under which nested ops read their run options: `model.run(x, { options: { 'sorted-net': ... } })`. */
export const SORTED_NET_OPTIONS = 'sorted-net';

/**
 * Which sub-network a call runs (a deployment choice: changing it needs no rebuild).
 *
 * - `width`: the fraction (0, 1] of each nested layer's channels, one number for every layer or
 *   one per width knob ({@link describeNesting} lists them; knobs left out run
 *   at full width). Each layer keeps `round(width * channels / multiple) * multiple` channels, at
 *   least one multiple: a prefix of its shared weights.
 * - `depth`: residual blocks kept per stage, counted from the stage's first: one number for every
 *   stage, or one per stage. Skipped blocks are not computed.
 * - `kernel`: the kernel size of elastic convolutions (a centre crop of the largest kernel), one
 *   size for every elastic layer or one per node name.
 */
export interface SubNetwork {
  /** Fraction of channels, for every knob or per knob (default 1). */
  width?: number | Readonly<Record<string, number>>;
  /** Residual blocks kept per stage, for every stage or per stage (default: all). */
  depth?: number | readonly number[];
  /** Kernel size of elastic convolutions, for every one or per node (default: the largest). */
  kernel?: number | Readonly<Record<string, number>>;
}

const KNOWN_KEYS = new Set(['width', 'depth', 'kernel']);

function invalid(field: string, problem: string): DynnError {
  return new DynnError('INVALID_OPTION', `Run option '${SORTED_NET_OPTIONS}'.${field} ${problem}.`);
}

function checkFraction(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1) {
    throw invalid(field, `must be a fraction in (0, 1], got ${JSON.stringify(value)}`);
  }
  return value;
}

function checkCount(value: unknown, field: string, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw invalid(field, `must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const checked = new WeakMap<object, SubNetwork>();

/**
 * Reads and checks the sub-network a run selects (`options['sorted-net']`); absent options select
 * the full network. Throws an `INVALID_OPTION` {@link DynnError} naming the bad field.
 */
export function readSubNetwork(options: RunOptions): SubNetwork {
  const given = options[SORTED_NET_OPTIONS];
  if (given === undefined) return {};
  if (!isRecord(given)) {
    throw new DynnError(
      'INVALID_OPTION',
      `Run option '${SORTED_NET_OPTIONS}' must be an object such as { width: 0.5, depth: 2 }.`,
    );
  }
  const cached = checked.get(given);
  if (cached !== undefined) return cached;
  for (const key of Object.keys(given)) {
    if (!KNOWN_KEYS.has(key)) throw invalid(key, `is unknown; the fields are ${[...KNOWN_KEYS].join(', ')}`);
  }
  const { width, depth, kernel } = given;
  if (width !== undefined) {
    if (isRecord(width)) for (const [knob, w] of Object.entries(width)) checkFraction(w, `width['${knob}']`);
    else checkFraction(width, 'width');
  }
  if (depth !== undefined) {
    if (Array.isArray(depth)) {
      for (const [i, d] of depth.entries()) checkCount(d, `depth[${i}]`, 0);
    } else checkCount(depth, 'depth', 0);
  }
  if (kernel !== undefined) {
    if (isRecord(kernel))
      for (const [node, k] of Object.entries(kernel)) checkCount(k, `kernel['${node}']`, 1);
    else checkCount(kernel, 'kernel', 1);
  }
  const result = given as SubNetwork;
  checked.set(given, result);
  return result;
}

/** The width fraction a sub-network gives knob `knob` (1 when it names none). */
export function widthOf(sub: SubNetwork, knob: string): number {
  const { width } = sub;
  if (width === undefined) return 1;
  if (typeof width === 'number') return width;
  return width[knob] ?? 1;
}

/**
 * Channels a layer of `size` channels keeps at width `fraction`, rounded to a multiple of
 * `multiple` (at least one multiple, at most `size`).
 */
export function activeChannels(size: number, fraction: number, multiple: number): number {
  const rounded = Math.round((fraction * size) / multiple) * multiple;
  return Math.min(size, Math.max(Math.min(multiple, size), rounded));
}

/** Residual blocks a sub-network keeps in stage `stage` (every one when it says nothing). */
export function depthOf(sub: SubNetwork, stage: number): number {
  const { depth } = sub;
  if (depth === undefined) return Number.POSITIVE_INFINITY;
  if (typeof depth === 'number') return depth;
  const d = depth[stage];
  if (d === undefined) throw invalid('depth', `has ${depth.length} entries, but stage ${stage} needs one`);
  return d;
}

/** The kernel size a sub-network gives the elastic convolution `node` (undefined: its largest). */
export function kernelOf(sub: SubNetwork, node: string): number | undefined {
  const { kernel } = sub;
  if (kernel === undefined) return undefined;
  if (typeof kernel === 'number') return kernel;
  return kernel[node];
}

/**
 * A short, stable name for a sub-network (`w0.5-d2-k3`; per-knob choices in sorted order), usable
 * as a state-variant name: batch-norm statistics recalibrated for it are stored under it.
 */
export function subNetworkKey(sub: SubNetwork): string {
  const part = (prefix: string, value: number | Readonly<Record<string, number>> | readonly number[]) => {
    if (typeof value === 'number') return `${prefix}${value}`;
    if (Array.isArray(value)) return `${prefix}${value.join('_')}`;
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `${prefix}${entries.map(([k, v]) => `${k.replace(/[^A-Za-z0-9_.-]/g, '_')}_${v}`).join('_')}`;
  };
  const parts: string[] = [];
  // Width 1 is every channel, as no width is: one key for both.
  if (sub.width !== undefined && sub.width !== 1) parts.push(part('w', sub.width));
  if (sub.depth !== undefined) parts.push(part('d', sub.depth));
  if (sub.kernel !== undefined) parts.push(part('k', sub.kernel));
  return parts.length === 0 ? 'full' : parts.join('-');
}

/**
 * Run options selecting a sub-network, for `model.run(x, { options: subNetworkOptions(...) })`,
 * `evaluate` and `fit`.
 *
 * @example
 * ```ts
 * const { outputs } = await model.run(x, { options: subNetworkOptions({ width: 0.5, depth: 1 }) });
 * ```
 */
export function subNetworkOptions(sub: SubNetwork): RunOptions {
  return { [SORTED_NET_OPTIONS]: sub };
}
