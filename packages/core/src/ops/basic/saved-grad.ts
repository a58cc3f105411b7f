import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `forward(...inputs)` as one tape node whose gradient is `backward(dy, saved)`: one
 * gradient per input, where `saved` holds `toSave` as they were during the forward pass. tfjs keeps
 * its own handle on saved tensors until backprop ends, so `toSave` may be intermediates that the
 * caller disposes right after. Outside gradient recording nothing is saved.
 */
export function withSavedGrad(
  inputs: readonly tf.Tensor[],
  toSave: readonly tf.Tensor[],
  forward: (...inputs: tf.Tensor[]) => tf.Tensor,
  backward: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[],
): tf.Tensor {
  const op = tf.customGrad(
    // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
    (...args: any[]) => {
      const save = args.pop() as (tensors: tf.Tensor[]) => void;
      save([...toSave]);
      return {
        value: forward(...(args as tf.Tensor[])),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => backward(dy, saved),
      };
    },
  ) as unknown as (...args: tf.Tensor[]) => tf.Tensor;
  return op(...inputs);
}
