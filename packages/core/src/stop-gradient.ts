import * as tf from '@tensorflow/tfjs-core';

/**
 * An identity whose gradient is zero: the value flows on, the gradient stops (tfjs 4.22 has no
 * `stopGradient`). For fixed targets inside a taped step: a teacher's logits in distillation, the
 * features a halting head reads.
 */
export const stopGradient: (x: tf.Tensor) => tf.Tensor = tf.customGrad(
  // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
  (x: any) => ({
    value: tf.reshape(x as tf.Tensor, (x as tf.Tensor).shape),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  }),
) as unknown as (x: tf.Tensor) => tf.Tensor;
