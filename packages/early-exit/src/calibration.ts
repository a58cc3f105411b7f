import { type Dataset, DynnError, HostBatches, type Model, type RunOptions } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { exitDecision } from './exit.js';
import { type ExitInfo, exitOutputsOf } from './exits.js';
import { type ExitCriterion, exitRunOptions } from './options.js';

/** One operating point of a sweep: a threshold and what it gives on the data. */
export interface ParetoPoint {
  /**
   * The threshold every exit uses (for `patience`: the patience), one threshold per exit (points
   * of the per-exit search), or `null` for the network without exits.
   */
  threshold: number | number[] | null;
  /** Fraction of rows classified right. */
  accuracy: number;
  /** Mean FLOPs per row (backbone up to the exit taken, plus every exit head computed). */
  meanFlops: number;
  /** Rows served by each exit, in exit order, then by the final output. */
  exitHistogram: number[];
}

/** What {@link sweepExits} returns. */
export interface ExitSweep {
  /** The criterion swept. */
  criterion: Exclude<ExitCriterion, 'none'>;
  /** The exit nodes, in exit order. */
  exits: string[];
  /** The network without exits (see `staticModel`): every row to the final output, no exit head computed. */
  full: ParetoPoint;
  /** Every threshold swept, in the order given, shared by all exits. */
  points: ParetoPoint[];
  /**
   * With `perExit`: the path of the per-exit search, from every exit at the strictest threshold to
   * every exit at the loosest, each point with one threshold per exit. Empty otherwise.
   */
  perExitPoints: ParetoPoint[];
  /**
   * The Pareto front of `full`, `points` and `perExitPoints`: ascending mean FLOPs, strictly
   * ascending accuracy.
   */
  front: ParetoPoint[];
}

/** Options of {@link sweepExits}. */
export interface SweepOptions {
  /** The criterion to calibrate (its thresholds are the run options' `thresholds` or `patience`). */
  criterion: Exclude<ExitCriterion, 'none'>;
  /** Thresholds to simulate (for `patience`: patience values, integers >= 1). */
  thresholds: readonly number[];
  /** Rows per run (default 256). */
  batchSize?: number;
  /**
   * Also search one threshold per exit (`maxProb`, `entropy`, `learned`; Dynamic Perceiver's
   * budgeted calibration): a greedy path over the same threshold grid that, step by step, loosens
   * the exit whose step costs the least accuracy per FLOP saved. Early exits whose answers are
   * weaker then get stricter thresholds than later ones. Default false.
   */
  perExit?: boolean;
}

/** Per-row facts a sweep needs, read from one run of each batch with every exit computed. */
interface RowTable {
  rows: number;
  exits: number;
  /** Exit scores, row-major [rows, exits]: what the criterion compares with the threshold. */
  scores: Float64Array;
  /** Exit predictions [rows, exits]. */
  predictions: Int32Array;
  finalPredictions: Int32Array;
  labels: Int32Array;
  /** FLOPs a row pays when it leaves at exit k (k < exits) or at the final output, [rows, exits + 1]. */
  costs: Float64Array;
  /** FLOPs a row pays in the network without exits (no exit head computed), [rows]. */
  staticCosts: Float64Array;
}

function argMaxRow(values: ArrayLike<number>, offset: number, classes: number): number {
  let best = 0;
  for (let c = 1; c < classes; c++) if (values[offset + c]! > values[offset + best]!) best = c;
  return best;
}

/** The criterion's score of one row of logits, computed as the exit op does. */
function rowScore(
  criterion: 'maxProb' | 'entropy',
  logits: ArrayLike<number>,
  offset: number,
  classes: number,
): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let c = 0; c < classes; c++) max = Math.max(max, logits[offset + c]!);
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += Math.exp(logits[offset + c]! - max);
  if (criterion === 'maxProb') return 1 / sum;
  let entropy = 0;
  for (let c = 0; c < classes; c++) {
    const logP = logits[offset + c]! - max - Math.log(sum);
    entropy -= Math.exp(logP) * logP;
  }
  return entropy / Math.log(classes);
}

function labelsOf(y: tf.Tensor | Record<string, tf.Tensor>, output: string): tf.Tensor {
  if (y instanceof tf.Tensor) return y;
  const labels = y[output];
  if (labels === undefined) throw new DynnError('INVALID_INPUT', `y has no labels for output '${output}'.`);
  return labels;
}

/** Runs every batch once with exits off, reading each exit's prediction and score and each row's costs. */
async function readRows(
  model: Model,
  data: Dataset,
  exits: readonly ExitInfo[],
  criterion: SweepOptions['criterion'],
  batchSize: number,
): Promise<RowTable> {
  const output = exits[0]!.output;
  const xs = await HostBatches.from(data.x, 'x');
  const ys = await HostBatches.from(data.y, 'y');
  if (xs.size !== ys.size)
    throw new DynnError('INVALID_INPUT', `x has ${xs.size} rows but y has ${ys.size}.`);
  const n = exits.length;
  const table: RowTable = {
    rows: xs.size,
    exits: n,
    scores: new Float64Array(xs.size * n),
    predictions: new Int32Array(xs.size * n),
    finalPredictions: new Int32Array(xs.size),
    labels: new Int32Array(xs.size),
    costs: new Float64Array(xs.size * (n + 1)),
    staticCosts: new Float64Array(xs.size),
  };
  const wanted = [...exits.map((e) => e.logits), output, ...exits.flatMap((e) => (e.halt ? [e.halt] : []))];
  for (let start = 0; start < xs.size; start += batchSize) {
    const rows = Int32Array.from({ length: Math.min(batchSize, xs.size - start) }, (_, i) => start + i);
    const x = xs.batch(rows);
    const y = ys.batch(rows);
    const result = await model.run(x, { outputs: wanted, options: exitRunOptions({ criterion: 'none' }) });
    try {
      // A row leaving at exit k pays every node up to and including exit k (later heads never run).
      const report = result.report!;
      const cumulative = new Float64Array(n + 1);
      let running = 0;
      let heads = 0;
      for (const node of report.nodes) {
        running += node.flops;
        const k = exits.findIndex((e) => e.node === node.name);
        if (k >= 0) {
          cumulative[k] = running;
          heads += node.flops;
        }
      }
      cumulative[n] = report.flops;
      const labels = await labelsOf(y, output).data();
      const final = await result.outputs[output]!.data();
      const classes = final.length / rows.length;
      for (let i = 0; i < rows.length; i++) {
        const row = start + i;
        table.labels[row] = labels[i]!;
        table.finalPredictions[row] = argMaxRow(final, i * classes, classes);
        for (let k = 0; k <= n; k++) table.costs[row * (n + 1) + k] = cumulative[k]! / rows.length;
        table.staticCosts[row] = (report.flops - heads) / rows.length;
      }
      for (const [k, exit] of exits.entries()) {
        const logits = await result.outputs[exit.logits]!.data();
        const halt = criterion === 'learned' ? await result.outputs[exit.halt!]!.data() : undefined;
        for (let i = 0; i < rows.length; i++) {
          const at = (start + i) * n + k;
          const prediction = argMaxRow(logits, i * classes, classes);
          table.predictions[at] = prediction;
          if (criterion === 'learned') table.scores[at] = halt![i]!;
          else if (criterion === 'patience') {
            const previous = k === 0 ? -1 : table.predictions[at - 1]!;
            table.scores[at] = k > 0 && previous === prediction ? table.scores[at - 1]! + 1 : 0;
          } else table.scores[at] = rowScore(criterion, logits, i * classes, classes);
        }
      }
    } finally {
      tf.dispose([...Object.values(result.outputs), ...result.losses.map((l) => l.value)]);
      tf.dispose(x instanceof tf.Tensor ? [x] : Object.values(x));
      tf.dispose(y instanceof tf.Tensor ? [y] : Object.values(y));
    }
  }
  return table;
}

/**
 * What the network does on the table's rows with `threshold`, shared or one per exit (null: the
 * network without exits).
 */
function simulate(
  table: RowTable,
  criterion: SweepOptions['criterion'],
  threshold: number | number[] | null,
): ParetoPoint {
  const { rows, exits: n } = table;
  const histogram = new Array<number>(n + 1).fill(0);
  const decisions =
    threshold === null
      ? []
      : Array.from({ length: n }, (_, k) =>
          exitDecision(
            criterion === 'patience'
              ? { criterion, patience: threshold as number }
              : { criterion, thresholds: threshold },
            k,
          ),
        );
  let correct = 0;
  let flops = 0;
  for (let row = 0; row < rows; row++) {
    let served = n;
    for (let k = 0; k < decisions.length; k++) {
      if (decisions[k]!(table.scores[row * n + k]!)) {
        served = k;
        break;
      }
    }
    const prediction = served < n ? table.predictions[row * n + served]! : table.finalPredictions[row]!;
    if (prediction === table.labels[row]) correct++;
    flops += threshold === null ? table.staticCosts[row]! : table.costs[row * (n + 1) + served]!;
    histogram[served]! += 1;
  }
  return { threshold, accuracy: correct / rows, meanFlops: flops / rows, exitHistogram: histogram };
}

/**
 * The per-exit search: starts with every exit at the strictest threshold of the grid and, one
 * notch at a time, loosens the exit whose step loses the least accuracy per FLOP it saves (a step
 * that saves nothing is taken only when nothing saves), until every exit is at the loosest. Each
 * state on the way is a point. Costs (exits x grid size) simulations per step, no model run.
 */
function searchPerExit(
  table: RowTable,
  criterion: 'maxProb' | 'entropy' | 'learned',
  grid: readonly number[],
): ParetoPoint[] {
  // Strictest first: a high bar for probabilities, a low one for entropy.
  const ordered = [...new Set(grid)].sort((a, b) => (criterion === 'entropy' ? a - b : b - a));
  const notch = new Array<number>(table.exits).fill(0);
  const thresholdsAt = (n: readonly number[]) => n.map((i) => ordered[i]!);
  let current = simulate(table, criterion, thresholdsAt(notch));
  const path = [current];
  for (;;) {
    let best: { exit: number; point: ParetoPoint; cost: number } | undefined;
    for (let k = 0; k < table.exits; k++) {
      if (notch[k]! + 1 >= ordered.length) continue;
      const next = [...notch];
      next[k]! += 1;
      const point = simulate(table, criterion, thresholdsAt(next));
      const saved = current.meanFlops - point.meanFlops;
      const lost = current.accuracy - point.accuracy;
      // Accuracy lost per FLOP saved; a step saving nothing ranks after every step that saves.
      const cost = saved > 0 ? lost / saved : Number.POSITIVE_INFINITY;
      if (best === undefined || cost < best.cost) best = { exit: k, point, cost };
    }
    if (best === undefined) return path;
    notch[best.exit]! += 1;
    current = best.point;
    path.push(current);
  }
}

/** The points no other point beats on both FLOPs and accuracy: ascending FLOPs and accuracy. */
export function paretoFront(points: readonly ParetoPoint[]): ParetoPoint[] {
  const sorted = [...points].sort((a, b) => a.meanFlops - b.meanFlops || b.accuracy - a.accuracy);
  const front: ParetoPoint[] = [];
  for (const point of sorted)
    if (front.length === 0 || point.accuracy > front.at(-1)!.accuracy) front.push(point);
  return front;
}

/**
 * Calibrates exit thresholds on validation data (Dynamic Perceiver, BranchyNet): runs the model
 * ONCE per batch with exits off, reading every exit's logits (and halting probabilities) and each
 * exit's cumulative FLOPs from the compute report, then simulates every threshold in JS. A row
 * leaving at exit k pays the backbone up to k and the heads of exits 0..k. The simulation makes
 * the decisions the exit op makes in a dynamic run.
 *
 * @example
 * ```ts
 * const sweep = await sweepExits(model, validation, { criterion: 'maxProb', thresholds: [0.5, 0.8, 0.9, 0.99] });
 * const point = pickOperatingPoint(sweep, { maxAccuracyDrop: 0.005 });
 * const y = await model.predict(x, { options: runOptionsFor(sweep, point) });
 * ```
 */
export async function sweepExits(model: Model, data: Dataset, options: SweepOptions): Promise<ExitSweep> {
  const exits = exitOutputsOf(model.graph);
  const perPosition = exits.find(
    (e) => (model.graph.outputs.find((o) => o.name === e.logits)?.shape.length ?? 2) !== 2,
  );
  if (perPosition !== undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      `sweepExits: exit '${perPosition.node}' answers every position of a sequence, but calibration needs one answer per row; sweep the serving model (lastPositionModel) instead.`,
      { node: perPosition.node },
    );
  }
  const { criterion, thresholds } = options;
  if (!['maxProb', 'entropy', 'patience', 'learned'].includes(criterion)) {
    throw new DynnError(
      'INVALID_OPTION',
      `sweepExits: criterion is ${JSON.stringify(criterion)}; expected maxProb, entropy, patience or learned.`,
    );
  }
  if (thresholds.length === 0 || thresholds.some((t) => !Number.isFinite(t))) {
    throw new DynnError(
      'INVALID_OPTION',
      'sweepExits: thresholds must be a non-empty list of finite numbers.',
    );
  }
  if (criterion === 'patience' && thresholds.some((t) => !Number.isInteger(t) || t < 1)) {
    throw new DynnError('INVALID_OPTION', 'sweepExits: patience values must be integers >= 1.');
  }
  if (criterion === 'patience' && options.perExit === true) {
    throw new DynnError(
      'INVALID_OPTION',
      'sweepExits: perExit needs a thresholded criterion (maxProb, entropy or learned); patience is one count for all exits.',
    );
  }
  if (
    criterion === 'learned' &&
    exits.some((e) => e.halt === undefined || !model.graph.outputs.some((o) => o.name === e.halt))
  ) {
    throw new DynnError(
      'INVALID_OPTION',
      "sweepExits: criterion 'learned' needs exits inserted with halting: true.",
    );
  }
  const batchSize = options.batchSize ?? 256;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new DynnError(
      'INVALID_OPTION',
      `sweepExits: batchSize must be a positive integer, got ${batchSize}.`,
    );
  }
  const table = await readRows(model, data, exits, criterion, batchSize);
  if (table.rows === 0) throw new DynnError('INVALID_INPUT', 'sweepExits: the data has no rows.');
  const full = simulate(table, criterion, null);
  const points = thresholds.map((t) => simulate(table, criterion, t));
  const perExitPoints =
    options.perExit === true && criterion !== 'patience' ? searchPerExit(table, criterion, thresholds) : [];
  return {
    criterion,
    exits: exits.map((e) => e.node),
    full,
    points,
    perExitPoints,
    front: paretoFront([full, ...points, ...perExitPoints]),
  };
}

/** A constraint for {@link pickOperatingPoint}. */
export type OperatingConstraint =
  /** The cheapest point losing at most this much accuracy (a fraction: 0.005 = 0.5 pp) against the full network. */
  | {
      /** Accuracy the point may lose, a fraction of rows (0.005 = 0.5 pp). */
      maxAccuracyDrop: number;
    }
  /** The most accurate point costing at most this many mean FLOPs per row. */
  | {
      /** Mean FLOPs per row the point may cost. */
      targetMeanFlops: number;
    };

/**
 * Picks an operating point on a sweep's Pareto front. Throws `INVALID_OPTION` when no point meets
 * the constraint (a FLOP target below the cheapest point).
 */
export function pickOperatingPoint(sweep: ExitSweep, constraint: OperatingConstraint): ParetoPoint {
  const c = constraint as { maxAccuracyDrop?: number; targetMeanFlops?: number };
  if ((c.maxAccuracyDrop === undefined) === (c.targetMeanFlops === undefined)) {
    throw new DynnError(
      'INVALID_OPTION',
      'pickOperatingPoint: give exactly one of maxAccuracyDrop and targetMeanFlops.',
    );
  }
  if (c.maxAccuracyDrop !== undefined) {
    if (!(c.maxAccuracyDrop >= 0)) {
      throw new DynnError(
        'INVALID_OPTION',
        `pickOperatingPoint: maxAccuracyDrop must be >= 0, got ${c.maxAccuracyDrop}.`,
      );
    }
    // A tiny slack so a drop of exactly the allowed amount passes despite float rounding.
    const floor = sweep.full.accuracy - c.maxAccuracyDrop - 1e-12;
    return sweep.front.find((p) => p.accuracy >= floor)!;
  }
  const fitting = sweep.front.filter((p) => p.meanFlops <= c.targetMeanFlops!);
  if (fitting.length === 0) {
    throw new DynnError(
      'INVALID_OPTION',
      `pickOperatingPoint: no operating point costs at most ${c.targetMeanFlops} FLOPs per row; the cheapest costs ${sweep.front[0]!.meanFlops}.`,
    );
  }
  return fitting.at(-1)!;
}

/**
 * The run options that run a model at a sweep's operating point. For the `full` point (exits off)
 * the multi-exit model still computes its exit heads; the static network is `staticModel(model)`.
 */
export function runOptionsFor(sweep: ExitSweep, point: ParetoPoint): RunOptions {
  if (point.threshold === null) return exitRunOptions({ criterion: 'none' });
  return sweep.criterion === 'patience'
    ? exitRunOptions({ criterion: 'patience', patience: point.threshold as number })
    : exitRunOptions({ criterion: sweep.criterion, thresholds: point.threshold });
}
