import * as tf from '@tensorflow/tfjs-core';

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
 * target's arg-max (one-hot targets), as a scalar tensor.
 */
export function correctCount(predictions: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const predicted = tf.argMax(predictions, -1);
    const wanted =
      targets.rank === predictions.rank
        ? tf.argMax(targets, -1)
        : tf.cast(tf.reshape(targets, predicted.shape), 'int32');
    return tf.sum(tf.cast(tf.equal(predicted, wanted), 'float32')) as tf.Scalar;
  });
}
