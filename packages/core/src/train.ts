import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';
import { forwardForTraining } from './executor.js';
import { ensureGradients } from './gradients.js';
import { HostBatches, type TensorOrMap } from './host-batches.js';
import { correctCount, type LossFunction, type LossName, lossFunction } from './losses.js';
import type { Model } from './model.js';
import type { RunOptions } from './op.js';
import { createRng, shuffledIndices } from './random.js';

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
  | ((outputs: Record<string, tf.Tensor>, targets: Record<string, tf.Tensor>) => tf.Scalar);

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
  /** Run options the ops see during training. */
  options?: RunOptions;
  /** Hooks called as training progresses (progress bars, early stopping, logging). */
  callbacks?: FitCallbacks;
  /**
   * Learning rate per step (0-based) of `totalSteps`, set on the optimizer before each step: a
   * schedule such as warm-up or cosine decay. Works with tfjs's built-in optimizers.
   */
  learningRate?: (step: number, totalSteps: number) => number;
}

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

function named(data: TensorOrMap, names: readonly string[]): Record<string, tf.Tensor> {
  return data instanceof tf.Tensor ? { [names[0]!]: data } : data;
}

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
>;

/** What one training step measured. */
export interface StepResult {
  /** The step's loss, auxiliary losses included. */
  loss: number;
  /** Rows classified right in this batch (classification losses only). */
  correct?: number;
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
  private readonly trainable: ReadonlySet<tf.Variable>;
  private readonly objective: Objective;
  private readonly output: string;
  private readonly namedLoss: LossFunction | undefined;
  private readonly options: TrainerOptions;
  /** True when the objective is a classification loss (accuracy is counted). */
  readonly classifies: boolean;

  /** A trainer for `model`; without an `optimizer` it creates (and owns) an Adam with rate 1e-3. */
  constructor(model: Model, options: TrainerOptions = {}) {
    const outputNames = model.graph.outputs.map((o) => o.name);
    this.model = model;
    this.options = options;
    this.objective = options.loss ?? 'sparseCategoricalCrossentropy';
    this.output = options.output ?? outputNames[0]!;
    if (!outputNames.includes(this.output)) {
      throw new DynnError(
        'INVALID_OPTION',
        `No graph output '${this.output}'. Outputs: ${outputNames.join(', ')}.`,
      );
    }
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
    this.trainable = new Set(this.varList);
    this.optimizer = options.optimizer ?? tf.train.adam(1e-3);
    this.ownsOptimizer = options.optimizer === undefined;
  }

  /**
   * One step on a batch. `seed` drives the ops' randomness (dropout...). The caller keeps
   * ownership of `x` and `y`.
   */
  async step(x: TensorOrMap, y: TensorOrMap, seed = 0): Promise<StepResult> {
    const model = this.model;
    const feeds = new Map(
      Object.entries(
        named(
          x,
          model.graph.inputs.map((i) => i.name),
        ),
      ),
    );
    const targets = named(
      y,
      model.graph.outputs.map((o) => o.name),
    );
    const auxWeight = this.options.auxLossWeight ?? 1;
    let stateUpdates = new Map<tf.Variable, tf.Tensor>();
    let correct: tf.Scalar | undefined;
    await ensureGradients();
    try {
      const { value, grads } = tf.variableGrads(() => {
        const forward = forwardForTraining(model, feeds, this.options.options ?? {}, seed, {
          trainable: this.trainable,
        });
        stateUpdates = forward.stateUpdates;
        let loss: tf.Scalar;
        if (this.namedLoss) {
          const target = targets[this.output];
          if (target === undefined)
            throw new DynnError('INVALID_INPUT', `y has no targets for output '${this.output}'.`);
          loss = this.namedLoss(forward.outputs[this.output]!, target);
          if (this.classifies) correct = tf.keep(correctCount(forward.outputs[this.output]!, target));
        } else {
          loss = (this.objective as Exclude<Objective, LossName>)(forward.outputs, targets);
        }
        for (const aux of forward.losses) loss = tf.add(loss, tf.mul(aux.value, auxWeight));
        return loss;
      }, this.varList);
      const clipped = clip(grads, this.options.clipNorm, this.options.clipValue);
      this.optimizer.applyGradients(clipped);
      if (clipped !== grads) tf.dispose(clipped);
      tf.dispose(grads);
      for (const [variable, update] of stateUpdates) variable.assign(update);
      // One readback for the loss and the correct count: each readback is a sync point.
      const summary = correct ? tf.stack([value, correct]) : value;
      const [loss, right] = await summary.data();
      tf.dispose([value, summary]);
      if (!Number.isFinite(loss)) {
        throw new DynnError(
          'INVALID_INPUT',
          `The loss became ${loss}: lower the learning rate or clip gradients.`,
        );
      }
      const result: StepResult = { loss: loss! };
      if (correct) result.correct = right!;
      return result;
    } finally {
      tf.dispose([...stateUpdates.values()]);
      correct?.dispose();
    }
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
  const xs = await HostBatches.from(data.x, 'x');
  const ys = await HostBatches.from(data.y, 'y');
  if (xs.size !== ys.size)
    throw new DynnError('INVALID_INPUT', `x has ${xs.size} rows but y has ${ys.size}.`);
  if (xs.size === 0) throw new DynnError('INVALID_INPUT', 'The training data has no rows.');
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
          const result = await trainer.step(x, y, rng.int(2 ** 31));
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
      if (options.validationData) {
        const evaluateOptions: EvaluateOptions = {
          batchSize: Math.max(batchSize, 256),
          fromLogits: options.fromLogits ?? true,
        };
        if (options.output) evaluateOptions.output = options.output;
        if (typeof options.loss === 'string') evaluateOptions.loss = options.loss;
        if (options.options) evaluateOptions.options = options.options;
        const val = await evaluate(model, options.validationData, evaluateOptions);
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
  const batchSize = options.batchSize ?? 256;
  checkPositiveInt(batchSize, 'batchSize');
  const name = options.loss ?? 'sparseCategoricalCrossentropy';
  const loss = lossFunction(name, options.fromLogits ?? true);
  const classifies = name !== 'meanSquaredError';
  const output = options.output ?? model.graph.outputs[0]!.name;
  const xs = await HostBatches.from(data.x, 'x');
  const ys = await HostBatches.from(data.y, 'y');
  if (xs.size !== ys.size)
    throw new DynnError('INVALID_INPUT', `x has ${xs.size} rows but y has ${ys.size}.`);
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < xs.size; start += batchSize) {
    const rows = Int32Array.from({ length: Math.min(batchSize, xs.size - start) }, (_, i) => start + i);
    const x = xs.batch(rows);
    const y = ys.batch(rows);
    const target = y instanceof tf.Tensor ? y : y[output]!;
    const result = await model.run(x, {
      report: false,
      outputs: [output],
      ...(options.options ? { options: options.options } : {}),
    });
    try {
      const [l, c] = tf.tidy(() => [
        loss(result.outputs[output]!, target),
        classifies ? correctCount(result.outputs[output]!, target) : tf.scalar(0),
      ]);
      lossSum += (await l!.data())[0]! * rows.length;
      correct += (await c!.data())[0]!;
      tf.dispose([l!, c!]);
    } finally {
      tf.dispose([...Object.values(result.outputs), ...result.losses.map((a) => a.value)]);
      disposeAll(x);
      disposeAll(y);
    }
  }
  const logs: { loss: number; accuracy?: number } = { loss: lossSum / xs.size };
  if (classifies) logs.accuracy = correct / xs.size;
  return logs;
}
