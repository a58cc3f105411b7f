import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `forward(...inputs)` as one tape node whose gradient is `backward(dy, saved)`: one
 * gradient per input, where `saved` holds `toSave` as they were during the forward pass. tfjs keeps
 * saved tensors alive until backprop ends (as for its own kernels), so `toSave` may be
 * intermediates that the caller disposes right after.
 *
 * Why not `save` alone: on wasm, saving copies a tensor (wasm's `Identity` kernel copies data),
 * and tfjs's per-kernel leak check, on whenever the `IS_TEST` flag is set, counts those copies
 * as leaked. So while a gradient is being recorded, `toSave` is cloned before the op and the
 * clones are released inside it, which balances the count; elsewhere a clone shares its data and
 * costs nothing. Outside gradient recording nothing is saved or cloned.
 */
export function withSavedGrad(
  inputs: readonly tf.Tensor[],
  toSave: readonly tf.Tensor[],
  forward: (...inputs: tf.Tensor[]) => tf.Tensor,
  backward: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[],
): tf.Tensor {
  const recording = tf.engine().isTapeOn();
  const clones = recording ? toSave.map((t) => tf.clone(t)) : [];
  const op = tf.customGrad(
    // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
    (...args: any[]) => {
      const save = args.pop() as (tensors: tf.Tensor[]) => void;
      if (recording) {
        save(clones);
        tf.dispose(clones);
      }
      return {
        value: forward(...(args as tf.Tensor[])),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => backward(dy, saved),
      };
    },
  ) as unknown as (...args: tf.Tensor[]) => tf.Tensor;
  return op(...inputs);
}
