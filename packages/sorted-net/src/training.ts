import {
  createRng,
  type Dataset,
  DynnError,
  type FitOptions,
  fit,
  type History,
  lossFunction,
  type Model,
  type Objective,
  type Rng,
  seedFor,
  stopGradient,
  type TensorOrMap,
  type TrainingWindow,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { type SubNetwork, subNetworkOptions } from './options.js';

/**
 * How the sub-networks of a training step are chosen (see {@link sortedWindows}):
 *
 * - `sorted`: SortedNet, `perStep` sub-networks drawn uniformly from the space, the largest first.
 * - `sandwich`: the sandwich rule of US-Nets / BigNAS, the largest, the smallest and `perStep - 2`
 *   drawn uniformly.
 * - `progressive`: once-for-all's progressive shrinking, the largest alone, then elastic kernel,
 *   depth and width unlocked one phase after another.
 */
export type SamplingStrategy = 'sorted' | 'sandwich' | 'progressive';

/**
 * The sub-networks training samples from: the choices of each dimension, combined freely. A
 * dimension left out stays at its full value (width 1, every residual block, the largest kernel);
 * one width or kernel applies to every knob or elastic layer. The largest sub-network takes the
 * largest choice of each list, the smallest the smallest.
 */
export interface SubNetworkSpace {
  /** Width fractions in (0, 1]. */
  widths?: readonly number[];
  /** Residual blocks kept per stage: integers >= 0. */
  depths?: readonly number[];
  /** Kernel sizes of elastic convolutions: odd integers >= 1, among those the model was nested with. */
  kernels?: readonly number[];
}

/** Options of {@link sortedWindows}: the space, and how each step samples from it. */
export interface SortedTrainingOptions extends SubNetworkSpace {
  /** The sampling strategy (default `sandwich`). */
  strategy?: SamplingStrategy;
  /** Sub-networks per step, whose losses are averaged into one update (default 4). */
  perStep?: number;
  /** `progressive` only (required there): steps per phase; the last phase lasts to the end. */
  phaseSteps?: number;
  /** Seed of the sampling (default 0): the same seed and step give the same sub-networks. */
  seed?: number;
}

/** The dimensions of a space, in once-for-all's order of unlocking. */
const DIMENSIONS = [
  { list: 'kernels', field: 'kernel' },
  { list: 'depths', field: 'depth' },
  { list: 'widths', field: 'width' },
] as const;

/** The phases of progressive shrinking: the largest alone, then one more elastic dimension each. */
const PHASES = DIMENSIONS.length + 1;

function invalid(field: string, problem: string): DynnError {
  return new DynnError('INVALID_OPTION', `sortedWindows: '${field}' ${problem}.`);
}

function checkList(
  values: readonly number[] | undefined,
  field: string,
  ok: (v: number) => boolean,
  what: string,
  example: string,
): void {
  if (values === undefined) return;
  if (!Array.isArray(values) || values.length === 0) {
    throw invalid(
      field,
      `must be a non-empty list of ${what} (e.g. ${example}), or left out to keep it full`,
    );
  }
  for (const v of values) {
    if (typeof v !== 'number' || !ok(v)) {
      throw invalid(field, `must hold ${what}, got ${JSON.stringify(v)} (e.g. ${example})`);
    }
  }
}

function checkPositiveInt(value: unknown, field: string, fix: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw invalid(field, `must be a positive integer, got ${JSON.stringify(value)}: ${fix}`);
  }
}

/** The options' strategy, once every option is checked. */
function checkOptions(options: SortedTrainingOptions): SamplingStrategy {
  if (typeof options !== 'object' || options === null) {
    throw new DynnError(
      'INVALID_OPTION',
      'sortedWindows needs options such as { widths: [0.25, 0.5, 1], strategy: "sandwich" }.',
    );
  }
  const strategy = options.strategy ?? 'sandwich';
  if (!['sorted', 'sandwich', 'progressive'].includes(strategy)) {
    throw invalid('strategy', `is ${JSON.stringify(strategy)}; use 'sorted', 'sandwich' or 'progressive'`);
  }
  checkList(options.widths, 'widths', (v) => v > 0 && v <= 1, 'fractions in (0, 1]', '[0.25, 0.5, 1]');
  checkList(options.depths, 'depths', (v) => Number.isInteger(v) && v >= 0, 'integers >= 0', '[1, 2]');
  checkList(
    options.kernels,
    'kernels',
    (v) => Number.isInteger(v) && v >= 1 && v % 2 === 1,
    'odd integers >= 1',
    '[3, 5, 7]',
  );
  if (options.perStep !== undefined)
    checkPositiveInt(options.perStep, 'perStep', 'the number of sub-networks per step');
  if (strategy === 'progressive') {
    checkPositiveInt(options.phaseSteps, 'phaseSteps', "'progressive' needs the number of steps per phase");
  } else if (options.phaseSteps !== undefined) {
    throw invalid('phaseSteps', `applies to strategy 'progressive' only; leave it out for '${strategy}'`);
  }
  if (options.seed !== undefined && (typeof options.seed !== 'number' || !Number.isInteger(options.seed))) {
    throw invalid('seed', `must be an integer, got ${JSON.stringify(options.seed)}`);
  }
  return strategy;
}

/** The choices of each dimension, in {@link DIMENSIONS}' order, an empty list for a dimension kept full. */
type Choices = (readonly number[])[];

function extreme(choices: Choices, pick: (values: number[]) => number): SubNetwork {
  const sub: Record<string, number> = {};
  DIMENSIONS.forEach(({ field }, i) => {
    if (choices[i]!.length > 0) sub[field] = pick([...choices[i]!]);
  });
  return sub as SubNetwork;
}

function largest(choices: Choices): SubNetwork {
  return extreme(choices, (v) => Math.max(...v));
}

function smallest(choices: Choices): SubNetwork {
  return extreme(choices, (v) => Math.min(...v));
}

/** A sub-network drawn uniformly from the space: each dimension's choice drawn independently. */
function uniform(choices: Choices, rng: Rng): SubNetwork {
  return extreme(choices, (v) => v[rng.int(v.length)]!);
}

function spaceSize(choices: Choices): number {
  return choices.reduce((n, c) => n * Math.max(1, new Set(c).size), 1);
}

/**
 * Expands each mini-batch into the windows of one training step, one per sampled sub-network
 * (the same batch, each window with `options: subNetworkOptions(sub)`), for `fit`'s `windows`
 * option or `Trainer.stepWindows`: the sub-networks' gradients accumulate into one update
 * of the shared weights, so every nested sub-network learns at once.
 *
 * Strategies (`perStep` windows per step; a space holding one sub-network gives one window):
 * - `sorted` (SortedNet): the largest sub-network, then `perStep - 1` drawn uniformly from the
 *   space (with replacement).
 * - `sandwich` (US-Nets, BigNAS; the default): the largest, the smallest, then `perStep - 2` drawn
 *   uniformly; the largest alone when `perStep` is 1.
 * - `progressive` (once-for-all): phase 0 trains the largest alone, phase 1 also samples the
 *   kernel sizes, phase 2 the depths, phase 3 the widths; each phase lasts `phaseSteps` steps, the
 *   last to the end of training. Within a phase, sandwich sampling among the unlocked choices
 *   (the others at their largest).
 *
 * The largest sub-network is always window 0, so that a distilling objective
 * ({@link sortedObjective}) finds its predictions as `earlier[0]` in the later windows. Draws are
 * seeded from `seed` and the step: a run reproduces.
 *
 * @example
 * ```ts
 * const history = await fit(nested, { x: images, y: labels }, {
 *   windows: sortedWindows({ widths: [0.25, 0.5, 0.75, 1], depths: [1, 2], strategy: 'sandwich' }),
 *   loss: sortedObjective(),
 * });
 * ```
 */
export function sortedWindows(
  options: SortedTrainingOptions,
): (batch: { x: TensorOrMap; y: TensorOrMap }, step: number) => TrainingWindow[] {
  const strategy = checkOptions(options);
  const perStep = options.perStep ?? 4;
  const seed = options.seed ?? 0;
  const all: Choices = DIMENSIONS.map(({ list }) => [...(options[list] ?? [])]);
  const fullest = largest(all);
  const sample = (choices: Choices, rng: Rng, rule: 'sorted' | 'sandwich'): SubNetwork[] => {
    const top = largest(choices);
    if (spaceSize(choices) === 1) return [top];
    const subs = [top];
    if (rule === 'sandwich' && perStep >= 2) subs.push(smallest(choices));
    while (subs.length < perStep) subs.push(uniform(choices, rng));
    return subs;
  };
  const subNetworksAt = (step: number): SubNetwork[] => {
    const rng = createRng(seedFor(seed, `sorted-net.step.${step}`));
    if (strategy !== 'progressive') return sample(all, rng, strategy);
    const phase = Math.min(PHASES - 1, Math.floor(step / options.phaseSteps!));
    if (phase === 0) return [fullest];
    // Phase p unlocks the first p dimensions; the others stay at their largest choice.
    const unlocked: Choices = all.map((c, i) => (i < phase || c.length === 0 ? c : [Math.max(...c)]));
    return sample(unlocked, rng, 'sandwich');
  };
  return (batch, step) =>
    subNetworksAt(step).map((sub) => ({ x: batch.x, y: batch.y, options: subNetworkOptions(sub) }));
}

/** Options of {@link sortedObjective}. */
export interface SortedObjectiveOptions {
  /** Distil the largest sub-network's predictions into the others (default true). */
  distill?: boolean;
  /** Softmax temperature of the distillation (default 1). */
  temperature?: number;
  /** Weight of the distillation term of windows after the first; the label loss weighs 1 (default 1). */
  distillWeight?: number;
  /** The output holding the logits (default `logits`, or the model's only output). */
  output?: string;
}

function checkNumber(value: number | undefined, field: string, ok: (v: number) => boolean, what: string) {
  if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || !ok(value))) {
    throw new DynnError(
      'INVALID_OPTION',
      `sortedObjective: '${field}' must be ${what}, got ${JSON.stringify(value)}.`,
    );
  }
}

/**
 * The objective of sorted training over the windows of {@link sortedWindows}: window 0 (the
 * largest sub-network) learns from the labels alone (sparse softmax cross-entropy from logits
 * against integer labels); every later window learns from the labels plus, when distilling, the
 * largest sub-network's predictions of the same step (in-place distillation, US-Nets):
 * `distillWeight * T^2 * KL(softmax(teacher / T) || softmax(logits / T))`, the teacher's logits
 * held fixed (no gradient flows into them through this term). `T^2` keeps the gradient's scale
 * independent of the temperature. Positions of per-position outputs (`[batch, time, classes]`)
 * count as rows.
 *
 * @example
 * ```ts
 * await fit(nested, data, { windows: sortedWindows({ widths: [0.5, 1] }), loss: sortedObjective({ temperature: 2 }) });
 * ```
 */
export function sortedObjective(options: SortedObjectiveOptions = {}): Objective {
  const distill = options.distill ?? true;
  const temperature = options.temperature ?? 1;
  const distillWeight = options.distillWeight ?? 1;
  checkNumber(options.temperature, 'temperature', (v) => v > 0, 'a positive number');
  checkNumber(options.distillWeight, 'distillWeight', (v) => v >= 0, 'a number >= 0');
  const crossEntropy = lossFunction('sparseCategoricalCrossentropy', true);
  return (outputs, targets, { window, earlier } = { window: 0, earlier: [] }) => {
    const names = Object.keys(outputs);
    const name = options.output ?? (names.includes('logits') || names.length !== 1 ? 'logits' : names[0]!);
    const logits = outputs[name];
    if (logits === undefined) {
      throw new DynnError(
        'INVALID_OPTION',
        `sortedObjective: the model has no output '${name}' (its outputs: ${names.join(', ')}); name the logits with { output }.`,
      );
    }
    const labels = targets[name];
    if (labels === undefined) {
      throw new DynnError(
        'INVALID_INPUT',
        `sortedObjective: y has no labels for output '${name}'; it holds ${Object.keys(targets).join(', ') || 'none'}.`,
      );
    }
    const teacher = distill && window > 0 ? earlier[0]?.[name] : undefined;
    if (teacher === undefined) return crossEntropy(logits, labels);
    return tf.tidy(() => {
      const classes = logits.shape[logits.rank - 1]!;
      const rows = (t: tf.Tensor) => tf.reshape(t, [-1, classes]);
      const teacherLog = tf.logSoftmax(tf.div(rows(stopGradient(teacher)), temperature));
      const studentLog = tf.logSoftmax(tf.div(rows(logits), temperature));
      const kl = tf.mean(tf.sum(tf.mul(tf.exp(teacherLog), tf.sub(teacherLog, studentLog)), -1));
      const weight = distillWeight * temperature * temperature;
      return tf.add(crossEntropy(logits, labels), tf.mul(kl, weight)) as tf.Scalar;
    });
  };
}

/** Options of {@link fitSorted}: `fit`'s, the sampled space and the default objective's. */
export interface FitSortedOptions extends Omit<FitOptions, 'windows'> {
  /** The sub-networks each step trains ({@link sortedWindows}). */
  sorted: SortedTrainingOptions;
  /** Options of the objective {@link sortedObjective}, used when `loss` is not given. */
  objective?: SortedObjectiveOptions;
}

/**
 * `fit` with sorted training: each batch trains the sub-networks {@link sortedWindows} samples,
 * with {@link sortedObjective} (in-place distillation from the largest) unless `loss` is given.
 * Validation after each epoch measures `validationOptions`' sub-network (default the full one).
 *
 * @example
 * ```ts
 * await fitSorted(nested, { x, y }, { epochs: 5, sorted: { widths: [0.25, 0.5, 1], perStep: 3 } });
 * ```
 */
export async function fitSorted(model: Model, data: Dataset, options: FitSortedOptions): Promise<History> {
  const { sorted, objective, ...rest } = options;
  if (objective !== undefined && rest.loss !== undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      "fitSorted: give either 'loss' or 'objective' (the options of the default sortedObjective), not both.",
    );
  }
  return fit(model, data, {
    ...rest,
    windows: sortedWindows(sorted),
    loss: rest.loss ?? sortedObjective(objective),
  });
}
