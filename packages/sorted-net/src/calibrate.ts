import {
  applyPass,
  BATCH,
  createModel,
  DynnError,
  decideForTraining,
  forwardForTraining,
  type Model,
  type NodeHook,
  resolveAttrs,
  type TensorOrMap,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { NESTED_OP, type NestedAttrs } from './nested-op.js';
import {
  readSubNetwork,
  SORTED_NET_OPTIONS,
  type SubNetwork,
  subNetworkKey,
  subNetworkOptions,
} from './options.js';

/** Options of {@link calibrateBatchNorm}. */
export interface CalibrateOptions {
  /** Rows per forward pass (default 256): each batch norm normalises with this batch's statistics. */
  batchSize?: number;
  /** Batches used, from the first row on (default: every row of the data). */
  batches?: number;
}

/** The key of the full network, whose statistics are the default ones. */
const FULL = subNetworkKey({});

/** The wrapped op whose statistics calibration recomputes. */
const BATCH_NORM = 'core.BatchNorm';

/** The statistics of one batch norm's input, pooled over batches (Chan et al.'s parallel update). */
interface Pooled {
  /** Values each channel's statistics cover: rows times positions. */
  count: number;
  mean: Float64Array;
  /** Sum of squared deviations from `mean`. */
  m2: Float64Array;
}

function pool(
  into: Pooled | undefined,
  count: number,
  mean: ArrayLike<number>,
  m2: ArrayLike<number>,
): Pooled {
  if (into === undefined) return { count, mean: Float64Array.from(mean), m2: Float64Array.from(m2) };
  const total = into.count + count;
  for (let c = 0; c < into.mean.length; c++) {
    const delta = mean[c]! - into.mean[c]!;
    into.mean[c]! += (delta * count) / total;
    into.m2[c]! += m2[c]! + (delta * delta * into.count * count) / total;
  }
  into.count = total;
  return into;
}

function checkPositiveInt(value: unknown, field: string): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isInteger(value) || value < 1)) {
    throw new DynnError(
      'INVALID_OPTION',
      `calibrateBatchNorm: '${field}' must be a positive integer, got ${JSON.stringify(value)}.`,
    );
  }
}

/** `x` as the named feeds of `model`'s inputs (already checked by a run). */
function feedsOf(model: Model, x: TensorOrMap): Map<string, tf.Tensor> {
  if (x instanceof tf.Tensor) return new Map([[model.graph.inputs[0]!.name, x]]);
  return new Map(Object.entries(x));
}

/**
 * Recomputes the batch-norm statistics of sub-networks of a nested model from calibration data,
 * as slimmable networks do after training: a sub-network's layers see activations distributed
 * differently from the full network's, and statistics averaged over the sub-networks trained
 * together fit none of them. Works for any sub-network, trained or not (a width never sampled in
 * training included).
 *
 * Returns a new model (`model` is left as it was; the caller disposes both) in which every
 * nested batch norm (`sorted-net.Nested` wrapping `core.BatchNorm`) holds a state variant per
 * sub-network, named by {@link subNetworkKey} (`w0.5-d1`); the full network (`{}`, key `full`)
 * writes the default statistics instead. `model.run(x, { options: subNetworkOptions(sub) })` on
 * the new model then normalises with `sub`'s statistics, with nothing else to select.
 *
 * The statistics are exact averages over the calibration rows, in batches of `batchSize`, the
 * network in training mode up to each batch norm (each earlier batch norm normalises with its
 * batch's statistics, as in training; dropout, if any, is on): per channel the mean of the
 * batch norm's input over every row and position, and the biased variance `E[x^2] - mean^2`,
 * both pooled over the batches. A variant's channels the sub-network drops keep the default
 * statistics; a batch norm the sub-network skips (in a dropped residual block) keeps them all.
 * Read back asynchronously: works on every backend.
 *
 * @example
 * ```ts
 * const calibrated = await calibrateBatchNorm(nested, [{ width: 0.25 }, { width: 0.5 }, {}], { x: images });
 * const { outputs } = await calibrated.run(x, { options: subNetworkOptions({ width: 0.25 }) });
 * ```
 */
export async function calibrateBatchNorm(
  model: Model,
  subNetworks: readonly SubNetwork[],
  data: { x: TensorOrMap },
  options: CalibrateOptions = {},
): Promise<Model> {
  checkPositiveInt(options.batchSize, 'batchSize');
  checkPositiveInt(options.batches, 'batches');
  if (!Array.isArray(subNetworks) || subNetworks.length === 0) {
    throw new DynnError(
      'INVALID_OPTION',
      'calibrateBatchNorm needs a non-empty list of sub-networks, e.g. [{ width: 0.5 }, {}].',
    );
  }
  const subs = new Map<string, SubNetwork>();
  for (const sub of subNetworks) {
    const checked = readSubNetwork({ [SORTED_NET_OPTIONS]: sub });
    subs.set(subNetworkKey(checked), checked);
  }
  const bnOp = model.runtime.op(BATCH_NORM);
  const axes = new Map<string, number>();
  for (const node of model.graph.nodes) {
    const attrs = node.attrs as NestedAttrs;
    if (node.op === NESTED_OP && attrs.op === BATCH_NORM)
      axes.set(node.name, resolveAttrs(bnOp, attrs.attrs, node.name).axis as number);
  }
  if (axes.size === 0) {
    throw new DynnError(
      'INVALID_GRAPH',
      'calibrateBatchNorm: the model has no nested batch norm (sorted-net.Nested wrapping core.BatchNorm): nest the model first with nestModel(model).',
    );
  }
  if (typeof data !== 'object' || data === null || data.x === undefined) {
    throw new DynnError('INVALID_INPUT', 'calibrateBatchNorm needs calibration data { x }.');
  }
  // A run that asks for no output checks the feeds (names, dtypes, shapes, finite values) and computes nothing.
  await model.run(data.x, { outputs: [], report: false });
  const feeds = feedsOf(model, data.x);
  const batchMajor = new Set(model.graph.inputs.filter((i) => i.shape[0] === BATCH).map((i) => i.name));
  const first = [...feeds].find(([name]) => batchMajor.has(name))?.[1];
  const rows = first?.shape[0] ?? 1;
  const batchSize = Math.min(options.batchSize ?? 256, rows);
  const batches = Math.min(options.batches ?? Number.POSITIVE_INFINITY, Math.ceil(rows / batchSize));

  const statistics = new Map<string, Map<string, Pooled>>();
  for (const [key, sub] of subs) {
    const runOptions = subNetworkOptions(sub);
    const pooled = new Map<string, Pooled>();
    for (let b = 0; b < batches; b++) {
      const start = b * batchSize;
      const size = Math.min(batchSize, rows - start);
      const batch = new Map(
        [...feeds].map(([name, t]) => [name, batchMajor.has(name) ? tf.slice(t, start, size) : t]),
      );
      try {
        // The nodes captured, in order, with the values each channel's statistics cover.
        const seen: { node: string; count: number }[] = [];
        const decisions = await decideForTraining(model, batch, runOptions, b);
        // Untaped: a training-mode forward whose state updates are dropped, its intermediates tidied.
        const moments = tf.tidy(() => {
          const found: tf.Tensor[] = [];
          const hook: NodeHook = {
            beforeNode(event) {
              const axis = axes.get(event.node.name);
              if (event.parent !== undefined || axis === undefined) return;
              const x = event.inputs[0]!;
              const a = axis < 0 ? axis + x.rank : axis;
              const rest = [...x.shape.keys()].filter((i) => i !== a);
              const moved = a === x.rank - 1 ? x : tf.transpose(x, [...rest, a]);
              const columns = tf.reshape(moved, [-1, x.shape[a]!]);
              const mean = tf.mean(columns, 0);
              found.push(mean, tf.sum(tf.square(tf.sub(columns, mean)), 0));
              seen.push({ node: event.node.name, count: columns.shape[0]! });
            },
          };
          const forward = forwardForTraining(model, batch, runOptions, b, { decisions, hooks: [hook] });
          tf.dispose([...forward.stateUpdates.values()]);
          return found;
        });
        const values = await Promise.all(moments.map((t) => t.data()));
        tf.dispose(moments);
        seen.forEach(({ node, count }, i) => {
          pooled.set(node, pool(pooled.get(node), count, values[2 * i]!, values[2 * i + 1]!));
        });
      } finally {
        for (const [name, t] of batch) if (t !== feeds.get(name)) t.dispose();
      }
    }
    statistics.set(key, pooled);
  }
  return withStatistics(model, statistics, [...axes.keys()]);
}

/**
 * A copy of `model` with the statistics written: per sub-network key, a state variant of each
 * nested batch norm (the default statistics for `full`). A sub-network runs a prefix of each
 * batch norm's channels (a nested op's output narrows to a prefix, and a batch norm's channels
 * are its output's); the others keep `model`'s default values.
 */
async function withStatistics(
  model: Model,
  statistics: ReadonlyMap<string, ReadonlyMap<string, Pooled>>,
  nodes: readonly string[],
): Promise<Model> {
  const defaults = new Map<string, Float32Array>();
  for (const node of nodes) {
    for (const local of ['movingMean', 'movingVariance']) {
      const name = `${node}/${local}`;
      defaults.set(name, (await model.state.get(name)!.data()) as Float32Array);
    }
  }
  const variants = [...statistics.keys()].filter((key) => key !== FULL);
  const calibrated =
    variants.length > 0
      ? applyPass(model, 'core.add-state-variants', { variants, nodes })
      : createModel(model.runtime, model.graph, {
          weights: new Map([...model.params, ...model.state].map(([name, v]) => [name, tf.clone(v)])),
        });
  try {
    for (const [key, pooled] of statistics) {
      for (const [node, { count, mean, m2 }] of pooled) {
        const suffix = key === FULL ? '' : `@${key}`;
        const written: [string, (c: number) => number][] = [
          ['movingMean', (c) => mean[c]!],
          ['movingVariance', (c) => m2[c]! / count],
        ];
        for (const [local, value] of written) {
          const values = Float32Array.from(defaults.get(`${node}/${local}`)!);
          for (let c = 0; c < mean.length; c++) values[c] = value(c);
          const target = calibrated.state.get(`${node}/${local}${suffix}`)!;
          const t = tf.tensor(values, target.shape);
          target.assign(t);
          t.dispose();
        }
      }
    }
  } catch (error) {
    calibrated.dispose();
    throw error;
  }
  return calibrated;
}
