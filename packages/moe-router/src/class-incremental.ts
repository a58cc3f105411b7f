import {
  createModel,
  createRuntime,
  DynnError,
  fit,
  GraphBuilder,
  type Model,
  type Runtime,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { initKeyValueKeys, KEY_VALUE_BOTTLENECK_OP, selectKeys } from './key-value-bottleneck.js';
import { moeRouter } from './plugin.js';

/** The autoencoder whose encoder gives both arms their features. */
export interface AutoencoderOptions {
  /** Units of the hidden layer on each side of the code (default 256). */
  hidden?: number;
  /** Size of the code: the features both arms read (default 64). */
  features?: number;
  /** Adam learning rate (default 2e-3). */
  learningRate?: number;
  /** Images per step (default 64). */
  batchSize?: number;
}

/** The key-value bottleneck arm. */
export interface BottleneckArmOptions {
  /** Codebooks (default 64). */
  heads?: number;
  /** Keys per codebook (default 128). */
  keysPerHead?: number;
  /** Size of a key, each head's projection of the features (default 8). */
  keySize?: number;
  /** SGD learning rate of the values (default 8). */
  learningRate?: number;
  /** The most k-means iterations per head (default 15). */
  kmeansIterations?: number;
  /** Training rows k-means runs on, a seeded sample (default 3000). */
  kmeansRows?: number;
}

/** The linear probe arm. */
export interface ProbeArmOptions {
  /** SGD learning rate (default 0.1). */
  learningRate?: number;
}

/** Where {@link runClassIncremental} stands, for progress displays. */
export interface ClassIncrementalProgress {
  /** The stage: training the autoencoder, setting the keys, or training an arm task by task. */
  stage: 'autoencoder' | 'keys' | 'keyValue' | 'probe';
  /** Steps of the stage done (epochs of the autoencoder, tasks of an arm). */
  done: number;
  /** Steps of the stage in all. */
  of: number;
  /** The last training loss of the stage, when there is one. */
  loss?: number;
}

/** What {@link runClassIncremental} needs: the images, the tasks, and how long to train. */
export interface ClassIncrementalOptions {
  /** Training images, `[rows, ...]` (any shape per row, e.g. `[rows, 28, 28, 1]`), values in [0, 1]. */
  trainImages: tf.Tensor;
  /** Their classes, `[rows]` integers in `[0, classes)`. */
  trainLabels: tf.Tensor;
  /** Test images, shaped like the training ones. */
  testImages: tf.Tensor;
  /** Their classes. */
  testLabels: tf.Tensor;
  /**
   * The tasks in training order, each a list of classes: `[[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]`.
   * A class belongs to one task at most; rows of classes in no task are left out.
   */
  tasks: number[][];
  /** Classes the arms tell apart (default: the largest class in a task, plus one). */
  classes?: number;
  /** Epochs of autoencoder training on the training images, without labels (default 5). */
  encoderEpochs?: number;
  /** Epochs of each arm on each task's training rows (default 3). */
  taskEpochs?: number;
  /** Rows per step when an arm trains on a task (default 32). */
  batchSize?: number;
  /** Seed of initialisation, shuffling and k-means (default 0): the same seed gives the same results. */
  seed?: number;
  /** Also train each arm on all tasks at once, the i.i.d. upper bound (default true). */
  joint?: boolean;
  /** The autoencoder. */
  autoencoder?: AutoencoderOptions;
  /** The key-value bottleneck arm. */
  bottleneck?: BottleneckArmOptions;
  /** The linear probe arm. */
  probe?: ProbeArmOptions;
  /** Called as the experiment goes (after each autoencoder epoch, the keys, each task of an arm). */
  progress?: (event: ClassIncrementalProgress) => void;
}

/** The results of one arm of the experiment. */
export interface ArmResult {
  /** Accuracy on the test images of every task, after the last task: classes of all tasks told apart. */
  finalAccuracy: number;
  /**
   * `accuracy[after][task]`: accuracy on task `task`'s test images after training on tasks
   * `0..after`, for `task <= after` (a row per task, growing). Predictions are over all classes,
   * with no task given (class-incremental).
   */
  accuracy: number[][];
  /** After each task, accuracy on the test images of the tasks seen so far. */
  seenAccuracy: number[];
  /**
   * Forgetting of every task but the last (Chaudhry et al. 2018): the best accuracy the task had
   * after any earlier point of training, minus its accuracy after the last task.
   */
  forgetting: number[];
  /** Mean of {@link ArmResult.forgetting} (0 with a single task). */
  meanForgetting: number;
  /** Accuracy on every task's test images when trained on all tasks at once (with `joint`). */
  jointAccuracy?: number;
  /**
   * Wall-clock seconds of the arm's task-by-task training and evaluation (the bottleneck's
   * k-means included; the joint run not).
   */
  seconds: number;
}

/** What {@link runClassIncremental} measured. */
export interface ClassIncrementalResult {
  /** The key-value bottleneck arm: frozen keys, values trained task by task. */
  keyValue: ArmResult & {
    /** Distinct keys each head selected on the test images, after the last task. */
    keysUsed: number[];
  };
  /** The linear probe arm: a dense layer fine-tuned task by task. */
  probe: ArmResult;
  /** The autoencoder: its final reconstruction loss (mean squared error per pixel) and training time. */
  autoencoder: {
    /** Reconstruction loss of its last epoch. */
    loss: number;
    /** Seconds it trained. */
    seconds: number;
  };
  /** Rows used: training and test images in some task. */
  rows: {
    /** Training images. */
    train: number;
    /** Test images. */
    test: number;
  };
  /** Wall-clock seconds of the whole experiment. */
  seconds: number;
}

/** A runtime with the key-value bottleneck. */
function experimentRuntime(): Runtime {
  return createRuntime({ plugins: [moeRouter()] });
}

function optionError(message: string): DynnError {
  return new DynnError('INVALID_OPTION', `runClassIncremental: ${message}`);
}

function positiveInt(value: number | undefined, fallback: number, name: string, min = 1): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min) throw optionError(`${name} must be an integer >= ${min}, got ${v}.`);
  return v;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!(v > 0) || !Number.isFinite(v)) throw optionError(`${name} must be a positive number, got ${v}.`);
  return v;
}

/** Checks the tasks and returns each class's task (-1: none) and the class count. */
function checkTasks(
  tasks: number[][],
  classesOption: number | undefined,
): { taskOf: Int32Array; classes: number } {
  if (!Array.isArray(tasks) || tasks.length === 0 || tasks.some((t) => !Array.isArray(t) || t.length === 0)) {
    throw optionError('tasks must be a non-empty list of non-empty class lists, e.g. [[0, 1], [2, 3]].');
  }
  const all = tasks.flat();
  if (all.some((c) => !Number.isInteger(c) || c < 0)) {
    throw optionError(`tasks must hold class indices (integers >= 0), got ${JSON.stringify(tasks)}.`);
  }
  const classes = positiveInt(classesOption, Math.max(...all) + 1, 'classes', 2);
  const taskOf = new Int32Array(classes).fill(-1);
  tasks.forEach((task, t) => {
    for (const c of task) {
      if (c >= classes) throw optionError(`task ${t} holds class ${c}, but there are ${classes} classes.`);
      if (taskOf[c] !== -1) {
        throw optionError(`class ${c} is in tasks ${taskOf[c]} and ${t}; give each class to one task.`);
      }
      taskOf[c] = t;
    }
  });
  return { taskOf, classes };
}

/** Reads labels to the host, checking them against the images and the classes. */
async function readLabels(
  labels: tf.Tensor,
  images: tf.Tensor,
  name: string,
  classes: number,
): Promise<Int32Array> {
  if (!(labels instanceof tf.Tensor) || !(images instanceof tf.Tensor)) {
    throw optionError(`${name}Images and ${name}Labels must be tf.Tensors.`);
  }
  if (images.rank < 2 || labels.size !== images.shape[0]) {
    throw optionError(
      `${name}Images [${images.shape}] and ${name}Labels [${labels.shape}] must hold one label per image row.`,
    );
  }
  const values = Int32Array.from(await labels.data());
  const bad = values.findIndex((v) => v < 0 || v >= classes);
  if (bad >= 0)
    throw optionError(`${name}Labels holds ${values[bad]} at row ${bad}, outside [0, ${classes}).`);
  return values;
}

/** Rows of `features` (`dims` wide) at `rows`, as a new tensor `[rows.length, dims]`. */
function rowsTensor(features: Float32Array, dims: number, rows: Int32Array): tf.Tensor2D {
  const out = new Float32Array(rows.length * dims);
  for (let i = 0; i < rows.length; i++) {
    out.set(features.subarray(rows[i]! * dims, (rows[i]! + 1) * dims), i * dims);
  }
  return tf.tensor2d(out, [rows.length, dims]);
}

/** The indices `i` with `keep(i)`, ascending. */
function indicesWhere(count: number, keep: (i: number) => boolean): Int32Array {
  const out: number[] = [];
  for (let i = 0; i < count; i++) if (keep(i)) out.push(i);
  return Int32Array.from(out);
}

/**
 * Trains the autoencoder (pixels -> hidden -> code -> hidden -> pixels, mean squared error, no
 * labels) and returns the codes of the training and test images, standardised per feature with
 * the training codes' mean and deviation.
 */
async function encoderFeatures(
  runtime: Runtime,
  trainPixels: tf.Tensor2D,
  testPixels: tf.Tensor2D,
  options: Required<AutoencoderOptions> & { epochs: number; seed: number },
  progress: ClassIncrementalOptions['progress'],
): Promise<{ train: Float32Array; test: Float32Array; loss: number }> {
  const pixels = trainPixels.shape[1];
  const b = new GraphBuilder(runtime);
  const x = b.input('pixels', 'float32', ['batch', pixels]);
  const h = b.add('core.Dense', x, { units: options.hidden, activation: 'relu' }, { name: 'encoder' });
  const code = b.add('core.Dense', h, { units: options.features }, { name: 'code' });
  const g = b.add('core.Dense', code, { units: options.hidden, activation: 'relu' }, { name: 'decoder' });
  const out = b.add('core.Dense', g, { units: pixels, activation: 'sigmoid' }, { name: 'pixels_out' });
  const model = createModel(runtime, b.build({ reconstruction: out, features: code }), {
    seed: options.seed,
  });
  const optimizer = tf.train.adam(options.learningRate);
  try {
    const history = await fit(
      model,
      { x: trainPixels, y: trainPixels },
      {
        epochs: options.epochs,
        batchSize: options.batchSize,
        optimizer,
        loss: 'meanSquaredError',
        output: 'reconstruction',
        seed: options.seed,
        callbacks: {
          onEpochEnd: (epoch, logs) =>
            progress?.({ stage: 'autoencoder', done: epoch + 1, of: options.epochs, loss: logs.loss }),
        },
      },
    );
    const codes = (input: tf.Tensor2D) =>
      inChunks(input, options.features, async (chunk) => {
        const t = await model.predict(chunk, { output: 'features' });
        try {
          return (await t.data()) as Float32Array;
        } finally {
          t.dispose();
        }
      });
    const train = await codes(trainPixels);
    const test = await codes(testPixels);
    standardise(train, test, options.features);
    return { train, test, loss: history.epochs.at(-1)!.loss };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}

/** Standardises both feature sets in place with the first one's per-feature mean and deviation. */
function standardise(train: Float32Array, test: Float32Array, dims: number): void {
  const rows = train.length / dims;
  for (let j = 0; j < dims; j++) {
    let mean = 0;
    for (let i = 0; i < rows; i++) mean += train[i * dims + j]!;
    mean /= rows;
    let variance = 0;
    for (let i = 0; i < rows; i++) variance += (train[i * dims + j]! - mean) ** 2;
    const scale = 1 / Math.sqrt(variance / rows + 1e-8);
    for (const set of [train, test]) {
      for (let i = j; i < set.length; i += dims) set[i] = (set[i]! - mean) * scale;
    }
  }
}

/** Rows per inference call: keeps the bottleneck's distances ([heads, rows, keys]) small. */
const CHUNK_ROWS = 1024;

/**
 * Runs `compute` on `input` (`[rows, ...]`) chunk by chunk of {@link CHUNK_ROWS} rows and lays the
 * results (`width` values per row) end to end.
 */
async function inChunks(
  input: tf.Tensor,
  width: number,
  compute: (chunk: tf.Tensor) => Promise<ArrayLike<number>>,
): Promise<Float32Array> {
  const rows = input.shape[0]!;
  const out = new Float32Array(rows * width);
  for (let start = 0; start < rows; start += CHUNK_ROWS) {
    const chunk = tf.slice(input, start, Math.min(CHUNK_ROWS, rows - start));
    try {
      out.set(await compute(chunk), start * width);
    } finally {
      chunk.dispose();
    }
  }
  return out;
}

/** The predicted class (arg-max logit) of every row of `features`, through the inference executor. */
async function predictClasses(model: Model, features: tf.Tensor2D): Promise<Int32Array> {
  const classes = await inChunks(features, 1, async (chunk) => {
    const logits = await model.predict(chunk);
    const predicted = tf.argMax(logits, -1);
    logits.dispose();
    try {
      return await predicted.data();
    } finally {
      predicted.dispose();
    }
  });
  return Int32Array.from(classes);
}

/** Distinct keys each head selected, from {@link selectKeys}'s `rows * heads` indices. */
function distinctKeys(selected: Int32Array, heads: number): number[] {
  const seen = Array.from({ length: heads }, () => new Set<number>());
  for (let i = 0; i < selected.length; i++) seen[i % heads]!.add(selected[i]!);
  return seen.map((keys) => keys.size);
}

/** Accuracy of `predicted` against `labels` over the rows in `rows`. */
function accuracyOn(predicted: Int32Array, labels: Int32Array, rows: Int32Array): number {
  let right = 0;
  for (const r of rows) if (predicted[r] === labels[r]) right++;
  return rows.length === 0 ? 0 : right / rows.length;
}

/** The data an arm trains and is evaluated on, on the host and as tensors. */
interface ArmData {
  features: number;
  trainFeatures: Float32Array;
  trainLabels: Int32Array;
  testFeatures: tf.Tensor2D;
  testLabels: Int32Array;
  /** Training rows of each task. */
  trainRows: Int32Array[];
  /** Test rows of each task. */
  testRows: Int32Array[];
  /** Test rows of any task. */
  allTestRows: Int32Array;
}

/** Trains an arm's model task by task (or on all tasks at once with `joint`) and measures it. */
async function trainArm(
  model: Model,
  data: ArmData,
  makeOptimizer: () => tf.Optimizer,
  options: { epochs: number; batchSize: number; seed: number; joint: boolean },
  onTask?: (task: number, loss: number) => void,
): Promise<{ accuracy: number[][]; seen: number[]; final: number }> {
  const schedule = options.joint
    ? [Int32Array.from(data.trainRows.flatMap((r) => Array.from(r)))]
    : data.trainRows;
  const accuracy: number[][] = [];
  const seen: number[] = [];
  let predicted: Int32Array = new Int32Array(0);
  for (const [t, rows] of schedule.entries()) {
    const x = rowsTensor(data.trainFeatures, data.features, rows);
    const y = tf.tensor1d(
      Int32Array.from(rows, (r) => data.trainLabels[r]!),
      'int32',
    );
    const optimizer = makeOptimizer();
    try {
      const history = await fit(
        model,
        { x, y },
        { epochs: options.epochs, batchSize: options.batchSize, optimizer, seed: options.seed + t },
      );
      onTask?.(t, history.epochs.at(-1)!.loss);
    } finally {
      optimizer.dispose();
      tf.dispose([x, y]);
    }
    predicted = await predictClasses(model, data.testFeatures);
    if (!options.joint) {
      accuracy.push(data.testRows.slice(0, t + 1).map((r) => accuracyOn(predicted, data.testLabels, r)));
      const seenRows = Int32Array.from(data.testRows.slice(0, t + 1).flatMap((r) => Array.from(r)));
      seen.push(accuracyOn(predicted, data.testLabels, seenRows));
    }
  }
  return { accuracy, seen, final: accuracyOn(predicted, data.testLabels, data.allTestRows) };
}

/** Forgetting per task but the last, from an accuracy matrix (Chaudhry et al. 2018). */
function forgettingOf(accuracy: number[][]): number[] {
  const last = accuracy.length - 1;
  return Array.from({ length: last }, (_, task) => {
    let best = 0;
    for (let after = task; after < last; after++) best = Math.max(best, accuracy[after]![task]!);
    return best - accuracy[last]![task]!;
  });
}

function armResult(
  run: { accuracy: number[][]; seen: number[]; final: number },
  seconds: number,
  joint: number | undefined,
): ArmResult {
  const forgetting = forgettingOf(run.accuracy);
  return {
    finalAccuracy: run.final,
    accuracy: run.accuracy,
    seenAccuracy: run.seen,
    forgetting,
    meanForgetting: forgetting.length === 0 ? 0 : forgetting.reduce((a, b) => a + b, 0) / forgetting.length,
    ...(joint === undefined ? {} : { jointAccuracy: joint }),
    seconds,
  };
}

/**
 * The class-incremental experiment of the discrete key-value bottleneck paper (Träuble et al.
 * 2023, section 5), on any labelled images, as a reusable function:
 *
 * 1. an autoencoder (dense: pixels, hidden, code, hidden, pixels) learns the training images
 *    without their labels, by mean squared reconstruction error;
 * 2. its frozen encoder gives every image a feature vector (the code, standardised per feature);
 * 3. arm A, a {@link keyValueBottleneckOp} over the features: its keys set by k-means on the
 *    training features (no labels, {@link initKeyValueKeys}), its values (one logit per class)
 *    trained with SGD on one task after another, cross-entropy over all classes;
 * 4. arm B, a linear probe (`core.Dense` with one unit per class) on the same features, fine-tuned
 *    with SGD on one task after another, the same way;
 * 5. after each task both arms are measured on the test images of every task seen and of all
 *    tasks, predicting among all classes with no task given.
 *
 * Returns per arm the accuracy on all tasks after the last one, the accuracy matrix, and the
 * forgetting of every task (the paper's finding: the bottleneck forgets far less, because a task
 * only moves the values of the keys its inputs select). Optionally (`joint`, on by default) also
 * each arm trained on all tasks at once: the upper bound without forgetting. Deterministic given
 * the seed on a backend. Tensors given stay the caller's; leaks nothing.
 *
 * Cost: dominated by the autoencoder, `encoderEpochs` passes over the training images through
 * four dense layers, and k-means on the host (`heads * kmeansIterations * kmeansRows *
 * keysPerHead * keySize`); the arms train on the features only.
 *
 * @example
 * ```ts
 * const { train, test } = await loadFashionMnist();
 * const tr = train.toTensors();
 * const te = test.toTensors();
 * const result = await runClassIncremental({
 *   trainImages: tr.images, trainLabels: tr.labels, testImages: te.images, testLabels: te.labels,
 *   tasks: [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]],
 * });
 * console.log(result.keyValue.meanForgetting, result.probe.meanForgetting);
 * ```
 */
export async function runClassIncremental(options: ClassIncrementalOptions): Promise<ClassIncrementalResult> {
  const started = performance.now();
  if (typeof options !== 'object' || options === null) throw optionError('needs an options object.');
  const { taskOf, classes } = checkTasks(options.tasks, options.classes);
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw optionError(`seed must be an integer, got ${seed}.`);
  const encoderEpochs = positiveInt(options.encoderEpochs, 5, 'encoderEpochs');
  const taskEpochs = positiveInt(options.taskEpochs, 3, 'taskEpochs');
  const batchSize = positiveInt(options.batchSize, 32, 'batchSize');
  const ae = options.autoencoder ?? {};
  const autoencoder: Required<AutoencoderOptions> = {
    hidden: positiveInt(ae.hidden, 256, 'autoencoder.hidden'),
    features: positiveInt(ae.features, 64, 'autoencoder.features'),
    learningRate: positive(ae.learningRate, 2e-3, 'autoencoder.learningRate'),
    batchSize: positiveInt(ae.batchSize, 64, 'autoencoder.batchSize'),
  };
  const kv = options.bottleneck ?? {};
  const bottleneck: Required<BottleneckArmOptions> = {
    heads: positiveInt(kv.heads, 64, 'bottleneck.heads'),
    keysPerHead: positiveInt(kv.keysPerHead, 128, 'bottleneck.keysPerHead'),
    keySize: positiveInt(kv.keySize, 8, 'bottleneck.keySize'),
    learningRate: positive(kv.learningRate, 8, 'bottleneck.learningRate'),
    kmeansIterations: positiveInt(kv.kmeansIterations, 15, 'bottleneck.kmeansIterations'),
    kmeansRows: positiveInt(kv.kmeansRows, 3000, 'bottleneck.kmeansRows'),
  };
  const probeRate = positive(options.probe?.learningRate, 0.1, 'probe.learningRate');
  const joint = options.joint ?? true;

  const trainLabels = await readLabels(options.trainLabels, options.trainImages, 'train', classes);
  const testLabels = await readLabels(options.testLabels, options.testImages, 'test', classes);
  const trainRows = options.tasks.map((_, t) =>
    indicesWhere(trainLabels.length, (i) => taskOf[trainLabels[i]!] === t),
  );
  const testRows = options.tasks.map((_, t) =>
    indicesWhere(testLabels.length, (i) => taskOf[testLabels[i]!] === t),
  );
  for (const [t, rows] of trainRows.entries()) {
    if (rows.length === 0)
      throw optionError(`task ${t} (classes ${options.tasks[t]}) has no training images.`);
  }
  const allTestRows = indicesWhere(testLabels.length, (i) => taskOf[testLabels[i]!]! >= 0);
  if (allTestRows.length === 0) throw optionError('no test image belongs to a task.');
  const usedTrain = trainRows.reduce((n, r) => n + r.length, 0);
  if (usedTrain < bottleneck.keysPerHead) {
    throw optionError(
      `the tasks have ${usedTrain} training images, fewer than bottleneck.keysPerHead (${bottleneck.keysPerHead}).`,
    );
  }

  const runtime = experimentRuntime();
  // 1-2. The autoencoder, and the frozen encoder's features.
  const aeStarted = performance.now();
  const trainPixels = tf.reshape(options.trainImages, [options.trainImages.shape[0]!, -1]) as tf.Tensor2D;
  const testPixels = tf.reshape(options.testImages, [options.testImages.shape[0]!, -1]) as tf.Tensor2D;
  let encoded: Awaited<ReturnType<typeof encoderFeatures>>;
  try {
    if (trainPixels.dtype !== 'float32' || testPixels.shape[1] !== trainPixels.shape[1]) {
      throw optionError(
        `trainImages and testImages must be float32 images of the same size, got ${options.trainImages.dtype}` +
          `[${options.trainImages.shape}] and ${options.testImages.dtype}[${options.testImages.shape}].`,
      );
    }
    encoded = await encoderFeatures(
      runtime,
      trainPixels,
      testPixels,
      { ...autoencoder, epochs: encoderEpochs, seed },
      options.progress,
    );
  } finally {
    tf.dispose([trainPixels, testPixels]);
  }
  const aeSeconds = (performance.now() - aeStarted) / 1000;

  const features = autoencoder.features;
  const testFeatures = tf.tensor2d(encoded.test, [testLabels.length, features]);
  const data: ArmData = {
    features,
    trainFeatures: encoded.train,
    trainLabels,
    testFeatures,
    testLabels,
    trainRows,
    testRows,
    allTestRows,
  };
  const trainOptions = { epochs: taskEpochs, batchSize, seed, joint: false };
  const taskRows = Int32Array.from(trainRows.flatMap((r) => Array.from(r)));
  const taskFeatures = rowsTensor(encoded.train, features, taskRows);
  /** Steps 3 to 5: both arms, task by task (and jointly), on the features. */
  async function compareArms(): Promise<ClassIncrementalResult> {
    const b = new GraphBuilder(runtime);
    const z = b.input('features', 'float32', ['batch', features]);
    const kvAttrs = {
      heads: bottleneck.heads,
      keysPerHead: bottleneck.keysPerHead,
      keySize: bottleneck.keySize,
      valueSize: classes,
    };
    const kvGraph = b.build({ logits: b.add(KEY_VALUE_BOTTLENECK_OP, z, kvAttrs, { name: 'kv' }) });
    /** A bottleneck model; the keys of `from` (the same seed gives the same projections) or k-means. */
    const keyValueModel = async (from?: Model): Promise<Model> => {
      if (from !== undefined) {
        const keys = new Map([['kv/keys', tf.clone(from.state.get('kv/keys')!)]]);
        return createModel(runtime, kvGraph, { seed, weights: keys });
      }
      const model = createModel(runtime, kvGraph, { seed });
      try {
        // 3. Keys from the training features of every task, without labels.
        await initKeyValueKeys(model, 'kv', taskFeatures, {
          iterations: bottleneck.kmeansIterations,
          seed,
          sampleRows: Math.min(bottleneck.kmeansRows, taskRows.length),
        });
      } catch (error) {
        model.dispose();
        throw error;
      }
      return model;
    };
    const probeModel = (): Model => {
      const b = new GraphBuilder(runtime);
      const z = b.input('features', 'float32', ['batch', features]);
      const logits = b.add('core.Dense', z, { units: classes }, { name: 'probe' });
      return createModel(runtime, b.build({ logits }), { seed });
    };

    // Arm A: the key-value bottleneck.
    const kvStarted = performance.now();
    const kvModel = await keyValueModel();
    options.progress?.({ stage: 'keys', done: 1, of: 1 });
    const sgd = () => tf.train.sgd(bottleneck.learningRate);
    let kvRun: Awaited<ReturnType<typeof trainArm>>;
    let keysUsed: number[];
    let kvSeconds: number;
    let kvJoint: number | undefined;
    try {
      kvRun = await trainArm(kvModel, data, sgd, trainOptions, (t, loss) =>
        options.progress?.({ stage: 'keyValue', done: t + 1, of: options.tasks.length, loss }),
      );
      const selected = await selectKeys(kvModel, 'kv', encoded.test);
      keysUsed = distinctKeys(selected, bottleneck.heads);
      kvSeconds = (performance.now() - kvStarted) / 1000;
      if (joint) {
        const model = await keyValueModel(kvModel);
        try {
          kvJoint = (await trainArm(model, data, sgd, { ...trainOptions, joint: true })).final;
        } finally {
          model.dispose();
        }
      }
    } finally {
      kvModel.dispose();
    }

    // Arm B: the linear probe.
    const probeStarted = performance.now();
    const probe = probeModel();
    let probeRun: Awaited<ReturnType<typeof trainArm>>;
    try {
      probeRun = await trainArm(
        probe,
        data,
        () => tf.train.sgd(probeRate),
        trainOptions,
        (t, loss) => options.progress?.({ stage: 'probe', done: t + 1, of: options.tasks.length, loss }),
      );
    } finally {
      probe.dispose();
    }
    const probeSeconds = (performance.now() - probeStarted) / 1000;
    let probeJoint: number | undefined;
    if (joint) {
      const model = probeModel();
      try {
        probeJoint = (
          await trainArm(model, data, () => tf.train.sgd(probeRate), { ...trainOptions, joint: true })
        ).final;
      } finally {
        model.dispose();
      }
    }

    return {
      keyValue: { ...armResult(kvRun, kvSeconds, kvJoint), keysUsed },
      probe: armResult(probeRun, probeSeconds, probeJoint),
      autoencoder: { loss: encoded.loss, seconds: aeSeconds },
      rows: { train: usedTrain, test: allTestRows.length },
      seconds: (performance.now() - started) / 1000,
    };
  }

  try {
    return await compareArms();
  } finally {
    tf.dispose([testFeatures, taskFeatures]);
  }
}
