import {
  DynnError,
  ensureGradients,
  forwardForTraining,
  lossFunction,
  type Model,
  type Objective,
  type RunOptions,
  stopGradient,
  type TrainingWindow,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** Options of {@link pgdAttack}. */
export interface PgdOptions {
  /** L-infinity radius of the perturbation, in input units (8 / 255 for pixels in [0, 1]). */
  epsilon: number;
  /** Gradient steps (1 with `randomStart: false` is FGSM). */
  steps: number;
  /** Size of each signed-gradient step (default `2.5 * epsilon / steps`, as Madry et al.). */
  stepSize?: number;
  /** Run options of the attacked call: the sub-network (`subNetworkOptions({ width: 0.5 })`); default the full network. */
  options?: RunOptions;
  /** Seed of the random start (default 0): the same seed gives the same adversarial inputs. */
  seed?: number;
  /** Valid input range the adversarial inputs are clipped to (default [0, 1]). */
  clip?: readonly [number, number];
  /** Start from a uniform random point of the ball (default true), as PGD does; false starts at `x`. */
  randomStart?: boolean;
  /**
   * Run the model in training mode while attacking (default false: inference mode, moving
   * statistics). Training-time attacks may want batch statistics: a nested network's moving
   * statistics are shared by every sub-network until they are recalibrated, so they describe none
   * of them well during training, while the training forward normalises with the batch's own.
   * State updates of the attack's forwards are discarded.
   */
  training?: boolean;
  /** The graph output holding the logits attacked (default the first). */
  output?: string;
}

function invalidOption(message: string): DynnError {
  return new DynnError('INVALID_OPTION', message);
}

function checkPositive(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw invalidOption(`${what} must be a finite number > 0, got ${JSON.stringify(value)}.`);
  }
  return value;
}

/** The checked attack settings, defaults filled in. */
interface Attack {
  epsilon: number;
  steps: number;
  stepSize: number;
  options: RunOptions;
  seed: number;
  low: number;
  high: number;
  randomStart: boolean;
  training: boolean;
  input: string;
  output: string;
}

function checkAttack(model: Model, options: PgdOptions, caller: string): Attack {
  if (options === null || typeof options !== 'object') {
    throw invalidOption(`${caller} needs options { epsilon, steps }, e.g. { epsilon: 8 / 255, steps: 10 }.`);
  }
  const epsilon = checkPositive(options.epsilon, `${caller}: epsilon`);
  const { steps } = options;
  if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 1) {
    throw invalidOption(`${caller}: steps must be a positive integer, got ${JSON.stringify(steps)}.`);
  }
  const stepSize =
    options.stepSize === undefined
      ? (2.5 * epsilon) / steps
      : checkPositive(options.stepSize, `${caller}: stepSize`);
  const [low, high] = options.clip ?? [0, 1];
  if (!(Number.isFinite(low) && Number.isFinite(high) && low < high)) {
    throw invalidOption(
      `${caller}: clip must be a range [low, high] with low < high, got ${JSON.stringify(options.clip)}.`,
    );
  }
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed))
    throw invalidOption(`${caller}: seed must be an integer, got ${JSON.stringify(seed)}.`);
  const inputs = model.graph.inputs;
  if (inputs.length !== 1) {
    throw invalidOption(
      `${caller} attacks graphs with one input; this one has ${inputs.map((i) => i.name).join(', ')}.`,
    );
  }
  const outputs = model.graph.outputs.map((o) => o.name);
  const output = options.output ?? outputs[0]!;
  if (!outputs.includes(output)) {
    throw invalidOption(
      `${caller}: the graph has no output '${output}'; its outputs are ${outputs.join(', ')}.`,
    );
  }
  return {
    epsilon,
    steps,
    stepSize,
    options: options.options ?? {},
    seed,
    low,
    high,
    randomStart: options.randomStart ?? true,
    training: options.training ?? false,
    input: inputs[0]!.name,
    output,
  };
}

function checkBatch(x: unknown, y: unknown, caller: string): asserts x is tf.Tensor {
  if (!(x instanceof tf.Tensor) || x.isDisposed) {
    throw new DynnError('INVALID_INPUT', `${caller}: x must be a live tf.Tensor of inputs.`);
  }
  if (!(y instanceof tf.Tensor) || y.isDisposed) {
    throw new DynnError('INVALID_INPUT', `${caller}: y must be a live tf.Tensor of class labels.`);
  }
  if (x.dtype !== 'float32') {
    throw new DynnError(
      'INVALID_INPUT',
      `${caller}: x must be float32 (a perturbation is real-valued), got ${x.dtype}.`,
    );
  }
  if (x.rank === 0 || y.rank === 0 || x.shape[0] !== y.shape[0]) {
    throw new DynnError(
      'INVALID_INPUT',
      `${caller}: x and y need the same number of rows, got shapes [${x.shape}] and [${y.shape}].`,
    );
  }
}

/**
 * The parameters of nodes that hold state (batch norm's scale and offset). Core runs a node whose
 * parameters are all frozen and that has state in inference mode (a frozen Keras layer), so a
 * training-mode attack marks these trainable; every other parameter stays frozen, so the ops
 * skip their weight gradients and compute the input's only.
 */
function statefulParams(model: Model): Set<tf.Variable> {
  const nodeOf = (name: string) => name.slice(0, name.lastIndexOf('/'));
  const stateful = new Set([...model.state.keys()].map(nodeOf));
  return new Set([...model.params].filter(([name]) => stateful.has(nodeOf(name))).map(([, v]) => v));
}

/** The sparse cross-entropy of one call at `probe`, taped for the gradient with respect to it. */
function attackLoss(model: Model, attack: Attack, y: tf.Tensor): (probe: tf.Tensor) => tf.Scalar {
  const crossEntropy = lossFunction('sparseCategoricalCrossentropy', true);
  const trainable = attack.training ? statefulParams(model) : new Set<tf.Variable>();
  return (probe) => {
    const forward = forwardForTraining(model, new Map([[attack.input, probe]]), attack.options, 0, {
      trainable,
      training: attack.training,
      inputGradients: true,
      outputs: [attack.output],
    });
    // An attack changes no state: batch-norm statistics of its forwards are dropped.
    tf.dispose([...forward.stateUpdates.values()]);
    return crossEntropy(forward.outputs[attack.output]!, y);
  };
}

/**
 * Projected gradient descent (Madry et al.) against one sub-network of a nested model (or any
 * single-input classifier): from a uniform random point of the L-infinity ball of radius
 * `epsilon` around `x`, `steps` signed-gradient ascents of the sparse cross-entropy on the labels
 * `y`, each followed by the projection onto the ball and onto the valid range `clip`. Gradients
 * with respect to the inputs come from core's taped forward in inference mode
 * (`forwardForTraining` with `inputGradients: true`), so the dynamic width, depth and kernel of
 * the call are what is attacked. Returns the adversarial inputs (the caller disposes them);
 * leaks no other tensor. Throws an `INVALID_OPTION` {@link DynnError} for a bad epsilon, step
 * count, step size or range.
 *
 * @example
 * ```ts
 * const adversarial = await pgdAttack(model, images, labels, {
 *   epsilon: 8 / 255,
 *   steps: 10,
 *   options: subNetworkOptions({ width: 0.5, depth: 1 }),
 * });
 * ```
 */
export async function pgdAttack(
  model: Model,
  x: tf.Tensor,
  y: tf.Tensor,
  options: PgdOptions,
): Promise<tf.Tensor> {
  const attack = checkAttack(model, options, 'pgdAttack');
  checkBatch(x, y, 'pgdAttack');
  await ensureGradients();
  const { epsilon, stepSize, low, high } = attack;
  const loss = attackLoss(model, attack, y);
  const project = (moved: tf.Tensor) =>
    tf.clipByValue(tf.add(x, tf.clipByValue(tf.sub(moved, x), -epsilon, epsilon)), low, high);
  let adversarial = tf.tidy(() =>
    attack.randomStart
      ? project(tf.add(x, tf.randomUniform(x.shape, -epsilon, epsilon, 'float32', attack.seed)))
      : tf.clipByValue(x, low, high),
  );
  try {
    for (let i = 0; i < attack.steps; i++) {
      const current = adversarial;
      adversarial = tf.tidy(() => {
        const gradient = tf.grad(loss)(current);
        return project(tf.add(current, tf.mul(tf.sign(gradient), stepSize)));
      });
      current.dispose();
    }
  } catch (error) {
    adversarial.dispose();
    throw error;
  }
  return adversarial;
}

/** Options of {@link evaluateRobustness}: the attack's, and the rows per attacked batch. */
export interface RobustnessOptions extends PgdOptions {
  /** Rows attacked at a time (default 128). */
  batchSize?: number;
}

/** Clean and adversarial accuracy of one sub-network, as {@link evaluateRobustness} measures it. */
export interface Robustness {
  /** Rows measured. */
  rows: number;
  /** Fraction of clean rows classified right. */
  clean: number;
  /** Fraction of PGD rows classified right (each row attacked at this sub-network). */
  robust: number;
}

/**
 * Clean and PGD accuracy of one sub-network on a labelled set: each batch of `batchSize` rows is
 * attacked by {@link pgdAttack} (seeded by `seed` plus the batch's first row, so the measurement
 * is reproducible) and both the clean and the adversarial rows are classified through
 * `model.run` with the same run options. Leaks no tensor.
 */
export async function evaluateRobustness(
  model: Model,
  data: { x: tf.Tensor; y: tf.Tensor },
  options: RobustnessOptions,
): Promise<Robustness> {
  const attack = checkAttack(model, options, 'evaluateRobustness');
  checkBatch(data?.x, data?.y, 'evaluateRobustness');
  const batchSize = options.batchSize ?? 128;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw invalidOption(
      `evaluateRobustness: batchSize must be a positive integer, got ${JSON.stringify(batchSize)}.`,
    );
  }
  const rows = data.x.shape[0]!;
  let clean = 0;
  let robust = 0;
  const correct = async (input: tf.Tensor, labels: tf.Tensor): Promise<number> => {
    const { outputs } = await model.run(input, {
      outputs: [attack.output],
      options: attack.options,
      report: false,
      checkInputs: false,
    });
    const count = tf.tidy(() =>
      tf.sum(
        tf.cast(
          tf.equal(tf.argMax(outputs[attack.output]!, -1), tf.cast(tf.reshape(labels, [-1]), 'int32')),
          'int32',
        ),
      ),
    );
    tf.dispose(Object.values(outputs));
    const [value] = await count.data();
    count.dispose();
    return value!;
  };
  for (let start = 0; start < rows; start += batchSize) {
    const size = Math.min(batchSize, rows - start);
    const x = tf.slice(data.x, start, size);
    const y = tf.slice(data.y, start, size);
    try {
      clean += await correct(x, y);
      const adversarial = await pgdAttack(model, x, y, { ...options, seed: attack.seed + start });
      try {
        robust += await correct(adversarial, y);
      } finally {
        adversarial.dispose();
      }
    } finally {
      tf.dispose([x, y]);
    }
  }
  return { rows, clean: clean / rows, robust: robust / rows };
}

/** Options of {@link robustDistillationObjective}. */
export interface RobustDistillationOptions {
  /** Softmax temperature of the distillation (default 4); the KL term is scaled by its square. */
  temperature?: number;
  /** Weight of the distillation term; the labels' cross-entropy gets `1 - alpha` (default 0.9). */
  alpha?: number;
  /** The graph output holding the logits (default `logits`). */
  output?: string;
}

/**
 * The objective of robust distillation in the style of ARD (Goldblum et al.) and ProARD, for
 * windows made by {@link robustDistillationWindows}: window 0 is the teacher (the largest
 * sub-network) on clean inputs and learns the labels (cross-entropy); every later window is a
 * student sub-network on its own PGD inputs and learns
 * `alpha * T^2 * KL(teacher(x) / T || student(x_adv) / T) + (1 - alpha) * CE(student(x_adv), y)`.
 * The teacher's clean logits come from the same tape and are held fixed (a zero gradient):
 * students follow the teacher, not the other way round. A student that is the teacher's own
 * sub-network on adversarial inputs makes the teacher robust as TRADES does.
 */
export function robustDistillationObjective(options: RobustDistillationOptions = {}): Objective {
  const temperature = checkPositive(options.temperature ?? 4, 'robustDistillationObjective: temperature');
  const alpha = options.alpha ?? 0.9;
  if (typeof alpha !== 'number' || !(alpha >= 0 && alpha <= 1)) {
    throw invalidOption(
      `robustDistillationObjective: alpha must be in [0, 1], got ${JSON.stringify(alpha)}.`,
    );
  }
  const output = options.output ?? 'logits';
  const crossEntropy = lossFunction('sparseCategoricalCrossentropy', true);
  return (outputs, targets, { window, earlier } = { window: 0, earlier: [] }) => {
    const logits = outputs[output];
    const labels = targets[output];
    if (logits === undefined || labels === undefined) {
      throw invalidOption(
        `robustDistillationObjective: no output or target '${output}' (outputs: ${Object.keys(outputs).join(', ')}); set 'output'.`,
      );
    }
    if (window === 0) return crossEntropy(logits, labels);
    const teacher = stopGradient(earlier[0]![output]!);
    const teacherLog = tf.logSoftmax(tf.div(teacher, temperature));
    const studentLog = tf.logSoftmax(tf.div(logits, temperature));
    const kl = tf.mean(tf.sum(tf.mul(tf.exp(teacherLog), tf.sub(teacherLog, studentLog)), -1));
    const distillation = tf.mul(kl, alpha * temperature * temperature);
    if (alpha === 1) return distillation as tf.Scalar;
    return tf.add(distillation, tf.mul(crossEntropy(logits, labels), 1 - alpha)) as tf.Scalar;
  };
}

/** Options of {@link robustDistillationWindows}: the training-time attack, and the teacher. */
export interface RobustWindowsOptions extends Omit<PgdOptions, 'options'> {
  /** Run options of the teacher window (default the full network). */
  teacher?: RunOptions;
}

/** The windows of one robust-distillation step; `dispose` frees the adversarial inputs. */
export interface RobustWindows {
  /** The teacher on the clean batch, then one window per student on its adversarial batch. */
  windows: TrainingWindow[];
  /** Frees the adversarial inputs (not the batch): call it after `Trainer.stepWindows`. */
  dispose(): void;
}

/**
 * The windows of one robust-distillation step for `Trainer.stepWindows` with
 * {@link robustDistillationObjective}: the teacher (default the full network) on the clean batch
 * first, then one window per student (run options of a sub-network, e.g. from `sortedWindows` or
 * sampled at random), each on a batch attacked by {@link pgdAttack} at that student (ARD attacks
 * the student it trains; the seed of student `i` is `seed + i`). The windows reuse `batch`'s
 * tensors, which the caller keeps.
 *
 * @example
 * ```ts
 * const trainer = new Trainer(model, { loss: robustDistillationObjective() });
 * const step = await robustDistillationWindows(model, batch, students, { epsilon: 8 / 255, steps: 3, seed });
 * try { await trainer.stepWindows(step.windows, { seed }); } finally { step.dispose(); }
 * ```
 */
export async function robustDistillationWindows(
  model: Model,
  batch: { x: tf.Tensor; y: tf.Tensor },
  students: readonly RunOptions[],
  options: RobustWindowsOptions,
): Promise<RobustWindows> {
  checkAttack(model, options, 'robustDistillationWindows');
  checkBatch(batch?.x, batch?.y, 'robustDistillationWindows');
  if (!Array.isArray(students) || students.length === 0) {
    throw invalidOption(
      'robustDistillationWindows needs at least one student (run options of a sub-network).',
    );
  }
  const { teacher = {}, ...attack } = options;
  const seed = attack.seed ?? 0;
  const made: tf.Tensor[] = [];
  try {
    for (const [i, student] of students.entries()) {
      made.push(await pgdAttack(model, batch.x, batch.y, { ...attack, seed: seed + i, options: student }));
    }
  } catch (error) {
    tf.dispose(made);
    throw error;
  }
  return {
    windows: [
      { x: batch.x, y: batch.y, options: teacher },
      ...students.map((student, i) => ({ x: made[i]!, y: batch.y, options: student })),
    ],
    dispose: () => tf.dispose(made),
  };
}
