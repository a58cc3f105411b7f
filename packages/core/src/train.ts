import * as tf from '@tensorflow/tfjs-core';
import { DynnError, notATensor } from './errors.js';
import {
  type ComputeReport,
  decideForTraining,
  forwardForTraining,
  prepareFeeds,
  reportHook,
} from './executor.js';
import { ensureGradients } from './gradients.js';
import { HostBatches, type TensorOrMap } from './host-batches.js';
import { type NodeHook, trainingDeciders } from './interpreter.js';
import {
  checkTargetShape,
  checkTargetValues,
  correctCount,
  countInvalidLabels,
  type LossFunction,
  type LossName,
  type LossOutput,
  lossFunction,
} from './losses.js';
import type { Model, RunResult } from './model.js';
import type { RunOptions, SessionValue } from './op.js';
import { createRng, shuffledIndices } from './random.js';
import type { Session } from './session.js';
import { checkFinite } from './validate.js';

/** Inputs and targets of a data set: a tensor, or tensors by graph input / output name. */
export interface Dataset {
  /** Inputs: a tensor for a single-input graph, or tensors by graph input name. */
  x: TensorOrMap;
  /** Targets: a tensor for the loss's output, or tensors by graph output name. */
  y: TensorOrMap;
}

/** Metrics of one epoch, as passed to `onEpochEnd` and kept in {@link History}. */
export interface EpochLogs {
  /** The epoch, 0-based. */
  epoch: number;
  /** Mean training loss over the epoch's rows. */
  loss: number;
  /** Fraction of rows classified right (classification losses only). */
  accuracy?: number;
  /** Loss on `validationData`, when given. */
  valLoss?: number;
  /** Accuracy on `validationData` (classification losses only). */
  valAccuracy?: number;
  /** Wall-clock seconds the epoch took. */
  seconds: number;
}

/** Hooks called during {@link fit}; each may be async. */
export interface FitCallbacks {
  /** Before the first epoch. */
  onTrainBegin?(): void | Promise<void>;
  /** Before each epoch (0-based). */
  onEpochBegin?(epoch: number): void | Promise<void>;
  /** After every step: `batch` counts steps within the epoch, `of` is the epoch's step count. */
  onBatchEnd?(batch: number, logs: { loss: number; of: number; epoch: number }): void | Promise<void>;
  /** After each epoch, with its metrics (validation included). */
  onEpochEnd?(epoch: number, logs: EpochLogs): void | Promise<void>;
  /** After the last epoch, with every epoch's metrics. */
  onTrainEnd?(history: History): void | Promise<void>;
}

/**
 * The objective of a step. A name applies a built-in loss to one graph output; a function sees
 * every output and every target.
 */
export type Objective =
  | LossName
  | ((
      outputs: Record<string, tf.Tensor>,
      targets: Record<string, tf.Tensor>,
      step?: ObjectiveContext,
    ) => tf.Scalar);

/** What a function objective knows of the step it is part of. */
export interface ObjectiveContext {
  /** The window being scored (0-based; 0 when the step has one window). */
  window: number;
  /**
   * The outputs of the step's earlier windows, on the same tape: e.g. the largest sub-network's
   * predictions that the smaller ones distil from (wrap them in `stopGradient` to use them as
   * fixed targets).
   */
  earlier: readonly Record<string, tf.Tensor>[];
}

/**
 * One window of a training step: a batch, its targets and, optionally, the run options it runs
 * with instead of the trainer's (one sub-network of a nested model per window: gradient
 * accumulation over sampled sub-networks in one step).
 */
export interface TrainingWindow {
  /** Inputs. */
  x: TensorOrMap;
  /** Targets. */
  y: TensorOrMap;
  /** Run options of this window (default: the trainer's for the step). */
  options?: RunOptions;
}

/** Options for {@link fit}. */
export interface FitOptions {
  /** Passes over the data (default 1). */
  epochs?: number;
  /** Rows per step (default 32). */
  batchSize?: number;
  /** A tfjs optimizer (default `tf.train.adam(1e-3)`). */
  optimizer?: tf.Optimizer;
  /** The loss (default `'sparseCategoricalCrossentropy'`). */
  loss?: Objective;
  /** Whether a named cross-entropy reads logits (default true). */
  fromLogits?: boolean;
  /** Graph output a named loss applies to (default: the first). */
  output?: string;
  /** Weight of the ops' auxiliary losses in the objective (default 1). */
  auxLossWeight?: number;
  /** Data evaluated after each epoch through the inference executor, reported as `valLoss` / `valAccuracy`. */
  validationData?: Dataset;
  /** Shuffle rows each epoch (default true), seeded by `seed`. */
  shuffle?: boolean;
  /** Seed of shuffling and of the ops' random streams (default 0). */
  seed?: number;
  /** Clip gradients to this global norm. */
  clipNorm?: number;
  /** Clip each gradient element to [-clipValue, clipValue]. */
  clipValue?: number;
  /** Which parameters train (default all): return false to freeze one. */
  trainable?: (paramName: string) => boolean;
  /**
   * Run options the ops see during training: fixed, or chosen per step (0-based, counted over
   * the whole run): sampled sub-networks, schedules.
   */
  options?: RunOptions | ((step: number) => RunOptions);
  /** Run options of validation after each epoch (default: `options` when fixed, else none). */
  validationOptions?: RunOptions;
  /**
   * Expands each mini-batch into the windows of one step (see {@link Trainer.stepWindows}): e.g.
   * one window per sampled sub-network, each with its run options, whose losses are averaged
   * into one update. Called with the batch and the step (0-based, over the whole run); the
   * windows may reuse the batch's tensors, which the loop disposes.
   */
  windows?: (batch: { x: TensorOrMap; y: TensorOrMap }, step: number) => readonly TrainingWindow[];
  /**
   * Called with each step's gradients by parameter name (`hidden/kernel`), after clipping and
   * before the optimizer update: return gradients to use instead (masking pruned weights, RigL's
   * growth), or nothing to keep them. A parameter no row influenced this step (a branch no row
   * took) has no entry. Tensors it returns belong to the trainer; the ones it was given stay the
   * trainer's too.
   */
  onGradients?: GradientHook;
  /**
   * Called after each optimizer update and the state updates: change weights here (re-apply a
   * pruning mask the optimizer's momentum or weight decay would otherwise undo, grow connections).
   */
  afterUpdate?: (info: StepInfo) => void;
  /** Called before and after every node of each step's taped forward (tracing, profiling). */
  hooks?: readonly NodeHook[];
  /** Hooks called as training progresses (progress bars, early stopping, logging). */
  callbacks?: FitCallbacks;
  /**
   * Learning rate per step (0-based) of `totalSteps`, set on the optimizer before each step: a
   * schedule such as warm-up or cosine decay. Works with tfjs's built-in optimizers.
   */
  learningRate?: (step: number, totalSteps: number) => number;
}

/** Where training stands, as the training hooks see it. */
export interface StepInfo {
  /** The step, 0-based, counted over the trainer's life. */
  step: number;
  /** The model's parameters by name. */
  params: ReadonlyMap<string, tf.Variable>;
}

/** See {@link FitOptions.onGradients}. */
export type GradientHook = (
  grads: Readonly<Record<string, tf.Tensor>>,
  info: StepInfo,
) => Record<string, tf.Tensor> | undefined;

/** Sets a tfjs optimizer's learning rate (SGD and momentum keep it in a constant, Adam & co. in a field). */
function setLearningRate(optimizer: tf.Optimizer, rate: number): void {
  const target = optimizer as unknown as { setLearningRate?: (rate: number) => void; learningRate?: number };
  if (typeof target.setLearningRate === 'function') target.setLearningRate(rate);
  else target.learningRate = rate;
}

/** A cosine decay from `initial` to `final` over the whole run, for {@link FitOptions.learningRate}. */
export function cosineDecay(initial: number, final = 0): (step: number, totalSteps: number) => number {
  return (step, totalSteps) =>
    final + 0.5 * (initial - final) * (1 + Math.cos((Math.PI * step) / Math.max(1, totalSteps)));
}

/** What {@link fit} returns. */
export interface History {
  /** Metrics of each epoch, in order. */
  epochs: EpochLogs[];
}

/** Options for {@link evaluate}. */
export interface EvaluateOptions {
  /** Rows per run (default 256). */
  batchSize?: number;
  /** The loss measured (default `'sparseCategoricalCrossentropy'`). */
  loss?: LossName;
  /** Whether a cross-entropy reads logits (default true). */
  fromLogits?: boolean;
  /** Graph output measured (default: the first). */
  output?: string;
  /** Run options the ops see (e.g. exit thresholds). */
  options?: RunOptions;
}

/**
 * Targets by output name, checked as feeds are: tensors, named after graph outputs. A tensor
 * alone is the first output's.
 */
function namedTargets(data: TensorOrMap, model: Model): Record<string, tf.Tensor> {
  const names = model.graph.outputs.map((o) => o.name);
  if (data instanceof tf.Tensor) return { [names[0]!]: data };
  const proto = typeof data === 'object' && data !== null ? Object.getPrototypeOf(data) : undefined;
  if (proto !== Object.prototype && proto !== null) throw notATensor('y', data);
  for (const [name, t] of Object.entries(data)) {
    if (!names.includes(name)) {
      throw new DynnError(
        'INVALID_INPUT',
        `y '${name}' names no graph output. The outputs are: ${names.join(', ')}.`,
      );
    }
    if (!(t instanceof tf.Tensor)) throw notATensor(`y '${name}'`, t);
    if (t.isDisposed) throw new DynnError('INVALID_INPUT', `y '${name}' was already disposed.`);
  }
  return data;
}

/** The graph output a named loss applies to (default: the first), checked. */
function lossOutput(model: Model, name: string | undefined): LossOutput {
  const outputs = model.graph.outputs;
  const output = name === undefined ? outputs[0]! : outputs.find((o) => o.name === name);
  if (output === undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      `No graph output '${name}'. Outputs: ${outputs.map((o) => o.name).join(', ')}.`,
    );
  }
  return { name: output.name, shape: output.shape };
}

/** What fit says of NaN or infinite values found in the data. */
const DATA_FIX = 'The data, not the learning rate, is at fault: drop or impute those values before training.';

function clip(grads: tf.NamedTensorMap, clipNorm?: number, clipValue?: number): tf.NamedTensorMap {
  if (clipNorm === undefined && clipValue === undefined) return grads;
  return tf.tidy(() => {
    let out = grads;
    if (clipValue !== undefined) {
      out = Object.fromEntries(
        Object.entries(out).map(([k, g]) => [k, tf.clipByValue(g, -clipValue, clipValue)]),
      );
    }
    if (clipNorm !== undefined) {
      const norm = tf.sqrt(tf.addN(Object.values(out).map((g) => tf.sum(tf.square(g)))));
      const scale = tf.div(clipNorm, tf.maximum(norm, clipNorm));
      out = Object.fromEntries(Object.entries(out).map(([k, g]) => [k, tf.mul(g, scale)]));
    }
    return out;
  });
}

function checkPositiveInt(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new DynnError('INVALID_OPTION', `${what} must be a positive integer, got ${value}.`);
  }
}

/** Options of a {@link Trainer}: the step-level part of {@link FitOptions}. */
export type TrainerOptions = Pick<
  FitOptions,
  | 'optimizer'
  | 'loss'
  | 'fromLogits'
  | 'output'
  | 'auxLossWeight'
  | 'clipNorm'
  | 'clipValue'
  | 'trainable'
  | 'options'
  | 'onGradients'
  | 'afterUpdate'
  | 'hooks'
> & {
  /** Return a {@link ComputeReport} of each step's taped forward (default false). */
  report?: boolean;
};

/** What one training step measured. */
export interface StepResult {
  /** The step's loss, auxiliary losses included. */
  loss: number;
  /** Rows classified right in this batch (classification losses only). */
  correct?: number;
  /** What the step's forward computed, when the trainer was created with `report: true`. */
  report?: ComputeReport;
}

/** Adds a kept count to a running one (both kept out of the tape's tidy). */
function accumulate(sum: tf.Scalar | undefined, count: tf.Scalar): tf.Scalar {
  if (sum === undefined) return tf.keep(count);
  const next = tf.keep(tf.add<tf.Scalar>(sum, count));
  sum.dispose();
  count.dispose();
  return next;
}

/** `label`, naming the window when a step has several. */
function windowLabel(label: string, window: number, windows: number): string {
  return windows === 1 ? label : `${label} of window ${window}`;
}

/**
 * Takes optimisation steps on a model, one batch at a time: forward in training mode, the loss
 * plus the ops' auxiliary losses, gradients (taped synchronously), optional clipping, the
 * optimizer update, then the ops' state updates. {@link fit} is a loop over it; use it directly
 * for custom loops (over time windows, sampled sub-networks...).
 */
export class Trainer {
  private readonly model: Model;
  private readonly optimizer: tf.Optimizer;
  private readonly ownsOptimizer: boolean;
  private readonly varList: tf.Variable[];
  /** Parameter name by tfjs variable name: gradients come keyed by the latter. */
  private readonly paramNames: Map<string, string>;
  private readonly trainable: ReadonlySet<tf.Variable>;
  private readonly objective: Objective;
  private readonly output: string;
  private readonly lossOutput: LossOutput;
  private readonly namedLoss: LossFunction | undefined;
  private readonly options: TrainerOptions;
  private steps = 0;
  /** True when the objective is a classification loss (accuracy is counted). */
  readonly classifies: boolean;

  /** A trainer for `model`; without an `optimizer` it creates (and owns) an Adam with rate 1e-3. */
  constructor(model: Model, options: TrainerOptions = {}) {
    this.model = model;
    this.options = options;
    this.objective = options.loss ?? 'sparseCategoricalCrossentropy';
    this.lossOutput = lossOutput(model, options.output);
    this.output = this.lossOutput.name;
    this.namedLoss =
      typeof this.objective === 'string'
        ? lossFunction(this.objective, options.fromLogits ?? true)
        : undefined;
    this.classifies =
      this.objective === 'sparseCategoricalCrossentropy' || this.objective === 'categoricalCrossentropy';
    const trainable = [...model.params.entries()].filter(([name]) => options.trainable?.(name) ?? true);
    if (trainable.length === 0)
      throw new DynnError('INVALID_OPTION', 'No parameter is trainable: check `trainable`.');
    this.varList = trainable.map(([, v]) => v);
    this.paramNames = new Map(trainable.map(([name, v]) => [v.name, name]));
    this.trainable = new Set(this.varList);
    const given = options.optimizer as { applyGradients?: unknown } | undefined;
    if (given !== undefined && typeof given?.applyGradients !== 'function') {
      throw new DynnError(
        'INVALID_OPTION',
        `optimizer is ${JSON.stringify(given)}; give a tfjs optimizer such as tf.train.sgd(0.1) or tf.train.adam(1e-3).`,
      );
    }
    this.optimizer = options.optimizer ?? tf.train.adam(1e-3);
    this.ownsOptimizer = options.optimizer === undefined;
  }

  /**
   * One step on a batch. `seed` drives the ops' randomness (dropout...). The caller keeps
   * ownership of `x` and `y`.
   *
   * Inputs and the shape of the targets are checked before the step (no readback). Labels out of
   * range for a sparse loss and NaN or infinite values are found with the loss's readback, after
   * the update was applied: {@link fit} checks its whole data set once before training instead.
   */
  async step(x: TensorOrMap, y: TensorOrMap, seed = 0): Promise<StepResult> {
    return this.stepWindows([{ x, y }], { seed });
  }

  /**
   * One step over consecutive windows of a sequence, on one tape: truncated backpropagation
   * through time over `windows.length` windows. In `session` (a {@link Session} of the model),
   * what a window's ops store (a recurrent state, a KV cache) is what the next window reads, and
   * the gradient flows back through it to the first window; the state the session held before the
   * step is where the tape starts (the truncation), and the last window's is stored for the next
   * step. The loss is the mean of the windows' losses; state updates of later windows win. Each
   * window is checked as {@link Trainer.step} checks its batch. Ops that decide in training need
   * a decide step per window, which would run before the previous window's state exists: they
   * take one window per step. A window's own `options` replace the trainer's for it: windows of
   * one batch under different options (sampled sub-networks) accumulate their gradients into one
   * update; a function objective sees the earlier windows' outputs (distillation from the first).
   *
   * @example
   * ```ts
   * const session = model.session();
   * for (const chunk of chunksOfFour) await trainer.stepWindows(chunk, { session }); // 4 windows per tape
   * ```
   */
  async stepWindows(
    windows: readonly TrainingWindow[],
    { seed = 0, session }: { seed?: number; session?: Session } = {},
  ): Promise<StepResult> {
    const model = this.model;
    if (!Array.isArray(windows) || windows.length === 0) {
      throw new DynnError('INVALID_INPUT', 'stepWindows needs at least one window { x, y }.');
    }
    if (session !== undefined && session.model !== model) {
      throw new DynnError(
        'INVALID_OPTION',
        'The session belongs to another model: train with its own model.',
      );
    }
    if (windows.length > 1 && trainingDeciders(model.compiled).length > 0) {
      throw new DynnError(
        'INVALID_OPTION',
        'An op of this model decides in training (a decide step per window would run before the previous ' +
          "window's state exists): train it one window per step.",
      );
    }
    const prepared: {
      feeds: Map<string, tf.Tensor>;
      batchSize: number;
      targets: Record<string, tf.Tensor>;
    }[] = [];
    for (const { x, y } of windows) {
      const { feeds, batchSize } = await prepareFeeds(model, x, false);
      const targets = namedTargets(y, model);
      for (const [name, t] of Object.entries(targets)) {
        if (t.rank === 0 || t.shape[0] !== batchSize) {
          const label = y instanceof tf.Tensor ? 'y' : `y '${name}'`;
          throw new DynnError(
            'INVALID_INPUT',
            `${label} has ${t.rank === 0 ? 'no rows (a scalar)' : `${t.shape[0]} rows`} but x has ${batchSize}.`,
          );
        }
      }
      prepared.push({ feeds, batchSize, targets });
    }
    const step = this.steps++;
    const stepOptions =
      typeof this.options.options === 'function' ? this.options.options(step) : (this.options.options ?? {});
    const windowOptions = windows.map((w) => w.options ?? stepOptions);
    const loss = typeof this.objective === 'string' ? this.objective : undefined;
    const yLabel = windows[0]!.y instanceof tf.Tensor ? 'y' : `y '${this.output}'`;
    if (loss !== undefined) {
      for (const { targets } of prepared) {
        const target = targets[this.output];
        if (target === undefined) {
          throw new DynnError(
            'INVALID_INPUT',
            `y has no targets for output '${this.output}'; it holds ${Object.keys(targets).join(', ') || 'none'}.`,
          );
        }
        checkTargetShape(loss, target.shape, this.lossOutput, yLabel);
      }
    }
    const sparse = loss === 'sparseCategoricalCrossentropy';
    const auxWeight = this.options.auxLossWeight ?? 1;
    const stateUpdates = new Map<tf.Variable, tf.Tensor>();
    // Session values as the windows see them: what the session holds, then each window's writes.
    const working = new Map<string, SessionValue>(session?.values ?? []);
    const written: tf.Tensor[] = [];
    let correct: tf.Scalar | undefined;
    let invalid: tf.Scalar | undefined;
    await ensureGradients();
    // Data-dependent decisions (routing, dispatch) are made first, untaped, with readbacks; the
    // taped step replays them synchronously. Nothing runs here when no op decides in training.
    const decisions = await decideForTraining(model, prepared[0]!.feeds, windowOptions[0]!, seed, {
      trainable: this.trainable,
      ...(session === undefined ? {} : { session: working }),
    });
    const report = this.options.report ? reportHook(prepared[0]!.batchSize) : undefined;
    // A named loss needs its output only: nodes that feed nothing else are skipped.
    const outputs = this.namedLoss ? [this.output] : undefined;
    try {
      const { value, grads } = tf.variableGrads(() => {
        let total: tf.Scalar | undefined;
        const earlier: Record<string, tf.Tensor>[] = [];
        prepared.forEach(({ feeds, targets }, w) => {
          const forward = forwardForTraining(model, feeds, windowOptions[w]!, seed + w, {
            trainable: this.trainable,
            decisions,
            ...(outputs ? { outputs } : {}),
            ...(session === undefined ? {} : { session: working }),
            hooks: [...(this.options.hooks ?? []), ...(report ? [report.hook] : [])],
          });
          for (const [variable, update] of forward.stateUpdates) {
            stateUpdates.get(variable)?.dispose();
            stateUpdates.set(variable, update);
          }
          for (const [key, value] of forward.sessionWrites) {
            working.set(key, value);
            if (typeof value !== 'number') written.push(value);
          }
          let windowLoss: tf.Scalar;
          const target = targets[this.output];
          if (this.namedLoss && target !== undefined) {
            const prediction = forward.outputs[this.output]!;
            windowLoss = this.namedLoss(prediction, target);
            if (this.classifies) correct = accumulate(correct, correctCount(prediction, target, sparse));
            if (sparse) invalid = accumulate(invalid, countInvalidLabels(target, prediction.shape.at(-1)!));
          } else {
            windowLoss = (this.objective as Exclude<Objective, LossName>)(forward.outputs, targets, {
              window: w,
              earlier,
            });
          }
          earlier.push(forward.outputs);
          for (const aux of forward.losses) windowLoss = tf.add(windowLoss, tf.mul(aux.value, auxWeight));
          total = total === undefined ? windowLoss : tf.add<tf.Scalar>(total, windowLoss);
        });
        return prepared.length === 1 ? total! : tf.div<tf.Scalar>(total!, prepared.length);
      }, this.varList);
      const clipped = clip(grads, this.options.clipNorm, this.options.clipValue);
      const byParam = Object.fromEntries(
        Object.entries(clipped).map(([name, g]) => [this.paramNames.get(name) ?? name, g]),
      );
      const info: StepInfo = { step, params: model.params };
      const hooked = this.options.onGradients?.(byParam, info) ?? byParam;
      // Every trainable variable, in one order, null where no gradient reached it: tfjs optimizers
      // keep their slots by position, which shifts when a variable is left out.
      this.optimizer.applyGradients(
        Object.fromEntries(
          [...this.paramNames].map(([variable, param]) => [variable, hooked[param] ?? null]),
        ) as tf.NamedTensorMap,
      );
      tf.dispose([
        ...new Set([...Object.values(hooked), ...Object.values(clipped), ...Object.values(grads)]),
      ]);
      for (const [variable, update] of stateUpdates) variable.assign(update);
      if (session !== undefined) {
        // The last window's values go to the session; what earlier windows wrote served the tape only.
        const final = new Map([...working].filter(([key, v]) => session.values.get(key) !== v));
        const kept = new Set(final.values());
        tf.dispose(written.filter((t) => !kept.has(t)));
        written.length = 0;
        session.commit(final);
      }
      this.options.afterUpdate?.(info);
      // One readback for the loss, the correct count and the count of invalid labels: each
      // readback is a sync point.
      const counts = [correct, invalid].filter((t) => t !== undefined);
      const summary = counts.length > 0 ? tf.stack([value, ...counts]) : value;
      const read = await summary.data();
      tf.dispose([value, summary]);
      const lossValue = read[0]!;
      if (invalid !== undefined && read[correct ? 2 : 1]! > 0) {
        for (const [w, { targets }] of prepared.entries()) {
          const target = targets[this.output]!;
          checkTargetValues(
            loss!,
            await target.data(),
            target.shape,
            this.lossOutput,
            windowLabel(yLabel, w, prepared.length),
          );
        }
        throw new DynnError('INVALID_INPUT', `${yLabel} holds labels outside the output's classes.`);
      }
      if (!Number.isFinite(lossValue)) await this.explainNonFinite(windows, prepared, lossValue);
      const result: StepResult = { loss: lossValue };
      if (correct) result.correct = read[1]!;
      if (report) result.report = report.finish({});
      return result;
    } finally {
      tf.dispose([...stateUpdates.values(), ...written]);
      correct?.dispose();
      invalid?.dispose();
    }
  }

  /**
   * Throws the error for a NaN or infinite loss: naming the data when x or y holds such values
   * (read back only now, on the failure path), else pointing at the learning rate.
   */
  private async explainNonFinite(
    windows: readonly TrainingWindow[],
    prepared: readonly { feeds: Map<string, tf.Tensor>; targets: Record<string, tf.Tensor> }[],
    loss: number,
  ): Promise<never> {
    const check = async (t: tf.Tensor, label: string) => {
      if (t.dtype === 'float32') checkFinite(await t.data(), t.shape, label, DATA_FIX);
    };
    for (const [w, { x, y }] of windows.entries()) {
      const { feeds, targets } = prepared[w]!;
      for (const [name, t] of feeds) {
        await check(t, windowLabel(x instanceof tf.Tensor ? 'x' : `x '${name}'`, w, windows.length));
      }
      for (const [name, t] of Object.entries(targets)) {
        await check(t, windowLabel(y instanceof tf.Tensor ? 'y' : `y '${name}'`, w, windows.length));
      }
    }
    throw new DynnError(
      'INVALID_INPUT',
      `The loss became ${loss} although x and y are finite: training diverged. Lower the learning rate, ` +
        'or clip gradients with clipNorm or clipValue.',
    );
  }

  /** Sets the learning rate of the trainer's optimizer (tfjs built-in optimizers). */
  setLearningRate(rate: number): void {
    setLearningRate(this.optimizer, rate);
  }

  /** Frees the optimizer's slots when the trainer created the optimizer itself. */
  dispose(): void {
    if (this.ownsOptimizer) this.optimizer.dispose();
  }
}

/**
 * Trains a model with a tfjs optimizer: seeded shuffling, mini-batches, the ops' auxiliary losses
 * added to the objective, optional gradient clipping, validation after each epoch, and callbacks
 * for progress. Works on every backend (on wasm through dynn's own gradients for conv, depthwise
 * conv and gather). Leaks no tensor.
 *
 * @example
 * ```ts
 * const history = await fit(model, { x: images, y: labels }, { epochs: 3, batchSize: 64 });
 * ```
 */
export async function fit(model: Model, data: Dataset, options: FitOptions = {}): Promise<History> {
  const epochs = options.epochs ?? 1;
  const batchSize = options.batchSize ?? 32;
  checkPositiveInt(epochs, 'epochs');
  checkPositiveInt(batchSize, 'batchSize');
  // The data is read to the host and checked once, before any step: labels, shapes and values.
  const output = lossOutput(model, options.output);
  const named = typeof options.loss === 'function' ? undefined : options.loss;
  const { xs, ys } = await readDataset(
    data,
    '',
    typeof options.loss === 'function'
      ? undefined
      : { loss: named ?? 'sparseCategoricalCrossentropy', output },
  );
  // Validation measures a named loss (sparse cross-entropy for a custom objective): checked as such.
  const validation = options.validationData
    ? await readDataset(options.validationData, 'validationData.', {
        loss: named ?? 'sparseCategoricalCrossentropy',
        output,
      })
    : undefined;
  const evaluateOptions: EvaluateOptions = {
    batchSize: Math.max(batchSize, 256),
    fromLogits: options.fromLogits ?? true,
  };
  if (options.output) evaluateOptions.output = options.output;
  if (typeof options.loss === 'string') evaluateOptions.loss = options.loss;
  const validationOptions =
    options.validationOptions ?? (typeof options.options === 'function' ? undefined : options.options);
  if (validationOptions) evaluateOptions.options = validationOptions;
  const trainer = new Trainer(model, options);
  const rng = createRng(options.seed ?? 0);
  const history: History = { epochs: [] };
  const steps = Math.ceil(xs.size / batchSize);
  let lastYield = performance.now();
  await options.callbacks?.onTrainBegin?.();
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      const started = performance.now();
      await options.callbacks?.onEpochBegin?.(epoch);
      const order =
        options.shuffle === false
          ? Int32Array.from({ length: xs.size }, (_, i) => i)
          : shuffledIndices(xs.size, rng);
      let lossSum = 0;
      let correct = 0;
      for (let step = 0; step < steps; step++) {
        const rows = order.subarray(step * batchSize, Math.min(xs.size, (step + 1) * batchSize));
        const x = xs.batch(rows);
        const y = ys.batch(rows);
        if (options.learningRate)
          trainer.setLearningRate(options.learningRate(epoch * steps + step, epochs * steps));
        try {
          const seed = rng.int(2 ** 31);
          const result = options.windows
            ? await trainer.stepWindows(options.windows({ x, y }, epoch * steps + step), { seed })
            : await trainer.step(x, y, seed);
          lossSum += result.loss * rows.length;
          correct += result.correct ?? 0;
          await options.callbacks?.onBatchEnd?.(step, { loss: result.loss, of: steps, epoch });
          // Readbacks on cpu/wasm resolve as microtasks, so a training loop never lets timers run:
          // yield now and then, so progress bars redraw and a page stays responsive.
          if (performance.now() - lastYield > 100) {
            await new Promise((resolve) => setTimeout(resolve, 0));
            lastYield = performance.now();
          }
        } finally {
          disposeAll(x);
          disposeAll(y);
        }
      }
      const logs: EpochLogs = { epoch, loss: lossSum / xs.size, seconds: 0 };
      if (trainer.classifies) logs.accuracy = correct / xs.size;
      if (validation) {
        const val = await evaluateHost(model, validation.xs, validation.ys, evaluateOptions);
        logs.valLoss = val.loss;
        if (val.accuracy !== undefined) logs.valAccuracy = val.accuracy;
      }
      logs.seconds = (performance.now() - started) / 1000;
      history.epochs.push(logs);
      await options.callbacks?.onEpochEnd?.(epoch, logs);
    }
  } finally {
    trainer.dispose();
  }
  await options.callbacks?.onTrainEnd?.(history);
  return history;
}

function disposeAll(data: TensorOrMap): void {
  tf.dispose(data instanceof tf.Tensor ? [data] : Object.values(data));
}

/**
 * Reads a data set to the host and checks it once: x and y are tensors with the same number of
 * rows (at least one), hold no NaN or infinite value, and, for a named loss, the targets fit the
 * output's shape and classes. `prefix` names the data set in messages (`validationData.`).
 */
async function readDataset(
  data: Dataset,
  prefix: string,
  targets: { loss: LossName; output: LossOutput } | undefined,
): Promise<{ xs: HostBatches; ys: HostBatches }> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new DynnError(
      'INVALID_INPUT',
      `${prefix ? prefix.slice(0, -1) : 'The data'} must be an object { x, y } of tf.Tensors.`,
    );
  }
  const xs = await HostBatches.from(data.x, `${prefix}x`);
  const ys = await HostBatches.from(data.y, `${prefix}y`);
  if (xs.size !== ys.size)
    throw new DynnError('INVALID_INPUT', `${prefix}x has ${xs.size} rows but ${prefix}y has ${ys.size}.`);
  if (xs.size === 0) {
    throw new DynnError(
      'INVALID_INPUT',
      `${prefix}x and ${prefix}y have no rows (an empty batch): give at least one row.`,
    );
  }
  xs.checkFinite(`${prefix}x`, DATA_FIX);
  ys.checkFinite(`${prefix}y`, DATA_FIX);
  if (targets !== undefined) {
    const { loss, output } = targets;
    const host = ys.get(output.name);
    if (host === undefined) {
      throw new DynnError(
        'INVALID_INPUT',
        `${prefix}y has no targets for output '${output.name}'; it holds ${ys.names.join(', ')}.`,
      );
    }
    const what = ys.names[0] === '' ? `${prefix}y` : `${prefix}y '${output.name}'`;
    checkTargetShape(loss, host.shape, output, what);
    checkTargetValues(loss, host.values, host.shape, output, what);
  }
  return { xs, ys };
}

/**
 * Measures loss and (for classification) accuracy of a model on a data set, batch by batch,
 * through the inference executor (so dynamic run options apply).
 */
export async function evaluate(
  model: Model,
  data: Dataset,
  options: EvaluateOptions = {},
): Promise<{
  /** Mean loss over the rows. */
  loss: number;
  /** Fraction of rows classified right (classification losses only). */
  accuracy?: number;
}> {
  checkPositiveInt(options.batchSize ?? 256, 'batchSize');
  const name = options.loss ?? 'sparseCategoricalCrossentropy';
  const { xs, ys } = await readDataset(data, '', { loss: name, output: lossOutput(model, options.output) });
  return evaluateHost(model, xs, ys, options);
}

/** {@link evaluate} on data already read to the host and checked. */
async function evaluateHost(
  model: Model,
  xs: HostBatches,
  ys: HostBatches,
  options: EvaluateOptions,
): Promise<{ loss: number; accuracy?: number }> {
  const batchSize = options.batchSize ?? 256;
  const name = options.loss ?? 'sparseCategoricalCrossentropy';
  const loss = lossFunction(name, options.fromLogits ?? true);
  const classifies = name !== 'meanSquaredError';
  const output = options.output ?? model.graph.outputs[0]!.name;
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < xs.size; start += batchSize) {
    const rows = Int32Array.from({ length: Math.min(batchSize, xs.size - start) }, (_, i) => start + i);
    const x = xs.batch(rows);
    const y = ys.batch(rows);
    const target = y instanceof tf.Tensor ? y : y[output]!;
    let result: RunResult | undefined;
    try {
      // The values were checked once on the host: no per-batch readback.
      result = await model.run(x, {
        report: false,
        checkInputs: false,
        outputs: [output],
        ...(options.options ? { options: options.options } : {}),
      });
      const prediction = result.outputs[output]!;
      const [l, c] = tf.tidy(() => [
        loss(prediction, target),
        classifies
          ? correctCount(prediction, target, name === 'sparseCategoricalCrossentropy')
          : tf.scalar(0),
      ]);
      lossSum += (await l!.data())[0]! * rows.length;
      correct += (await c!.data())[0]!;
      tf.dispose([l!, c!]);
    } finally {
      if (result) tf.dispose([...Object.values(result.outputs), ...result.losses.map((a) => a.value)]);
      disposeAll(x);
      disposeAll(y);
    }
  }
  const logs: { loss: number; accuracy?: number } = { loss: lossSum / xs.size };
  if (classifies) logs.accuracy = correct / xs.size;
  return logs;
}
