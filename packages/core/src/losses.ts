import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';
import type { Dim } from './ir.js';
import { elementAt } from './validate.js';

/** Built-in losses, by their Keras names. */
export type LossName = 'sparseCategoricalCrossentropy' | 'categoricalCrossentropy' | 'meanSquaredError';

/** A loss over a batch: predictions and targets in, scalar out. */
export type LossFunction = (predictions: tf.Tensor, targets: tf.Tensor) => tf.Scalar;

/**
 * The loss function for a name. Cross-entropies take logits when `fromLogits` (dynn graphs
 * usually end in a linear layer) and probabilities otherwise (imported Keras softmax heads).
 */
export function lossFunction(name: LossName, fromLogits = true): LossFunction {
  const logProbs = (predictions: tf.Tensor) =>
    fromLogits ? tf.logSoftmax(predictions) : tf.log(tf.clipByValue(predictions, 1e-7, 1));
  switch (name) {
    case 'sparseCategoricalCrossentropy':
      return (predictions, targets) =>
        tf.tidy(() => {
          const classes = predictions.shape[predictions.rank - 1]!;
          const oneHot = tf.oneHot(tf.cast(tf.reshape(targets, [-1]), 'int32'), classes);
          const flat = tf.reshape(logProbs(predictions), [-1, classes]);
          return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, flat), -1))) as tf.Scalar;
        });
    case 'categoricalCrossentropy':
      return (predictions, targets) =>
        tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(targets, logProbs(predictions)), -1))) as tf.Scalar);
    case 'meanSquaredError':
      return (predictions, targets) =>
        tf.tidy(() => tf.mean(tf.squaredDifference(predictions, targets)) as tf.Scalar);
  }
}

/**
 * Number of rows whose arg-max prediction equals the target class (sparse targets) or the
 * target's arg-max (one-hot targets), as a scalar tensor. `sparse` says which the targets are;
 * by default targets shaped like the predictions (more than one class) count as one-hot, so
 * sparse targets of shape `[N, 1]` need `sparse: true`.
 */
export function correctCount(predictions: tf.Tensor, targets: tf.Tensor, sparse?: boolean): tf.Scalar {
  return tf.tidy(() => {
    const predicted = tf.argMax(predictions, -1);
    const oneHot =
      sparse === undefined
        ? targets.rank === predictions.rank && targets.shape.at(-1) === predictions.shape.at(-1)
        : !sparse;
    const wanted = oneHot ? tf.argMax(targets, -1) : tf.cast(tf.reshape(targets, predicted.shape), 'int32');
    return tf.sum(tf.cast(tf.equal(predicted, wanted), 'float32')) as tf.Scalar;
  });
}

/** @internal The graph output a named loss reads: its name and declared shape. */
export interface LossOutput {
  /** The output's name. */
  name: string;
  /** Its declared shape (`batch` first). */
  shape: readonly Dim[];
}

const shapeText = (shape: readonly Dim[]) => `[${shape.join(', ')}]`;

/** Whether a concrete target shape fits `dims` (the first, batch, dimension and symbolic ones match anything). */
function fits(shape: readonly number[], dims: readonly Dim[]): boolean {
  return (
    shape.length === dims.length && dims.every((d, i) => i === 0 || typeof d !== 'number' || d === shape[i])
  );
}

/**
 * @internal Checks the shape of the targets of a named loss against its output, without reading
 * any value. Names one-hot targets given to the sparse loss and class indices given to the
 * categorical one. `what` names the targets in the message (`y`, `validationData.y 'logits'`).
 */
export function checkTargetShape(
  loss: LossName,
  shape: readonly number[],
  output: LossOutput,
  what: string,
): void {
  const out = output.shape;
  const rows = shape[0] ?? 0;
  const classes = out.at(-1);
  const onOutput = `output '${output.name}' (${shapeText(out)})`;
  if (loss === 'meanSquaredError') {
    if (fits(shape, out)) return;
    const wanted = [rows, ...out.slice(1)];
    const size = shape.reduce((a, b) => a * b, 1);
    const reshape =
      wanted.every((d) => typeof d === 'number') &&
      wanted.reduce<number>((a, b) => a * (b as number), 1) === size;
    throw new DynnError(
      'INVALID_INPUT',
      `${what} has shape ${shapeText(shape)} but ${onOutput} gives ${shapeText(wanted)}: loss 'meanSquaredError' ` +
        `needs targets of the output's shape (others would broadcast silently). ` +
        (reshape ? `Reshape them with tf.reshape(y, ${shapeText(wanted)}).` : 'Give targets of that shape.'),
    );
  }
  if (out.length < 2) return;
  const inner = out.slice(1, -1);
  const indices = shapeText([rows, ...inner]);
  const oneHot = shapeText([rows, ...out.slice(1)]);
  if (loss === 'sparseCategoricalCrossentropy') {
    if (fits(shape, [out[0]!, ...inner]) || fits(shape, [out[0]!, ...inner, 1])) return;
    if (fits(shape, out)) {
      throw new DynnError(
        'INVALID_INPUT',
        `${what} has shape ${shapeText(shape)}: one-hot rows, but loss 'sparseCategoricalCrossentropy' wants ` +
          `one class index per row, shape ${indices}. Pass loss: 'categoricalCrossentropy' for one-hot ` +
          'targets, or turn them into indices with tf.argMax(y, -1).',
      );
    }
    throw new DynnError(
      'INVALID_INPUT',
      `${what} has shape ${shapeText(shape)} but loss 'sparseCategoricalCrossentropy' on ${onOutput} ` +
        `wants one class index per row, shape ${indices}.`,
    );
  }
  if (fits(shape, out) && !(shape.at(-1) === 1 && classes !== 1)) return;
  if (fits(shape, [out[0]!, ...inner]) || fits(shape, [out[0]!, ...inner, 1])) {
    throw new DynnError(
      'INVALID_INPUT',
      `${what} has shape ${shapeText(shape)}: class indices, but loss 'categoricalCrossentropy' wants one-hot ` +
        `rows, shape ${oneHot}. Pass loss: 'sparseCategoricalCrossentropy' for class indices, or one-hot ` +
        `encode them with tf.oneHot(y, ${classes}).`,
    );
  }
  throw new DynnError(
    'INVALID_INPUT',
    `${what} has shape ${shapeText(shape)} but loss 'categoricalCrossentropy' on ${onOutput} wants ` +
      `one-hot rows, shape ${oneHot}.`,
  );
}

/**
 * @internal Checks the values of the targets of a named loss (host data, one pass): sparse labels
 * must be integers below the output's number of classes, categorical targets lie in [0, 1]. The
 * message names the offending value, its row and the number of classes.
 */
export function checkTargetValues(
  loss: LossName,
  values: ArrayLike<number>,
  shape: readonly number[],
  output: LossOutput,
  what: string,
): void {
  const classes = output.shape.at(-1);
  if (loss === 'sparseCategoricalCrossentropy' && typeof classes === 'number' && output.shape.length >= 2) {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (Number.isInteger(v) && v >= 0 && v < classes) continue;
      const where = elementAt(i, shape);
      const range = `output '${output.name}' has ${classes} classes, so labels must be integers 0..${classes - 1}`;
      throw new DynnError(
        'INVALID_INPUT',
        Number.isInteger(v)
          ? `${what} holds label ${v} at ${where}, but ${range}. Fix the labels` +
              (v >= classes ? `, or give the output ${v + 1} units.` : '.')
          : `${what} holds ${v} at ${where}, not a class index: ${range}. For probabilities, use loss 'categoricalCrossentropy'.`,
      );
    }
  }
  if (loss === 'categoricalCrossentropy') {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v >= 0 && v <= 1) continue;
      throw new DynnError(
        'INVALID_INPUT',
        `${what} holds ${v} at ${elementAt(i, shape)}, but loss 'categoricalCrossentropy' wants one-hot ` +
          `(or probability) rows with values in [0, 1]` +
          (Number.isInteger(v) && v > 1
            ? `: for class indices, use loss 'sparseCategoricalCrossentropy'.`
            : '.'),
      );
    }
  }
}

/**
 * @internal How many sparse labels of `targets` fall outside 0..classes-1, as a scalar computed on
 * the device (read back together with the loss, so it costs no extra sync point).
 */
export function countInvalidLabels(targets: tf.Tensor, classes: number): tf.Scalar {
  return tf.tidy(() => {
    const t = tf.cast(targets, 'float32');
    return tf.sum(tf.cast(tf.logicalOr(tf.less(t, 0), tf.greaterEqual(t, classes)), 'float32')) as tf.Scalar;
  });
}
