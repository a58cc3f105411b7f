// Shared by this folder's tests only (not exported by the package).
import { activateBackend, type GradientCheckOptions, isGpuBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { BackendName } from '../../backend.js';

/**
 * Runs `compute` on the cpu backend, reads its tensors back as arrays, disposes them and
 * re-activates `backend`: reference values from tfjs's own cpu kernels and gradients.
 */
export async function onCpu(backend: BackendName, compute: () => tf.Tensor[]): Promise<Float32Array[]> {
  await activateBackend('cpu');
  try {
    const tensors = compute();
    const arrays = await Promise.all(tensors.map(async (t) => (await t.data()) as Float32Array));
    tf.dispose(tensors);
    return arrays;
  } finally {
    await activateBackend(backend);
  }
}

/**
 * The output of a tfjs-layers layer (an independent Keras implementation) on `x` with the given
 * weights. Builds the layer on `x`, sets the weights, applies it and disposes the layer.
 */
export function layerOutput(
  layer: tfl.layers.Layer,
  weights: tf.Tensor[],
  x: tf.Tensor,
  kwargs: Record<string, unknown> = {},
): tf.Tensor {
  tf.dispose(layer.apply(x) as tf.Tensor);
  layer.setWeights(weights);
  const y = layer.apply(x, kwargs) as tf.Tensor;
  layer.dispose();
  return y;
}

/**
 * Spreads the taps of a `[kh, kw, a, b]` kernel `dilations` apart with zeros between them: a
 * dilated convolution with `w` equals an undilated one with this kernel. tfjs's own conv
 * gradients reject dilations, so references for dilated cases use this form.
 */
export function dilateKernel(w: tf.Tensor4D, dilations: [number, number]): tf.Tensor4D {
  const [dh, dw] = dilations;
  if (dh === 1 && dw === 1) return w;
  return tf.tidy(() => {
    const [kh, kw, a, b] = w.shape;
    // Rank-4 pads only: tfjs-webgl's pad shader does not compile for rank 5.
    const columns = tf.pad(tf.reshape(w, [kh * kw, 1, a * b, 1]), [
      [0, 0],
      [0, dw - 1],
      [0, 0],
      [0, 0],
    ]);
    const rows = tf.pad(tf.reshape(columns, [kh, 1, kw * dw * a * b, 1]), [
      [0, 0],
      [0, dh - 1],
      [0, 0],
      [0, 0],
    ]);
    const full = tf.reshape(rows, [kh * dh, kw * dw, a, b]);
    return tf.slice(full, [0, 0, 0, 0], [(kh - 1) * dh + 1, (kw - 1) * dw + 1, a, b]) as tf.Tensor4D;
  });
}

/**
 * A float32 tensor whose values are all distinct and at least `step` apart (a seeded shuffle of
 * `0, step, 2 step, ...`, centred): max-pool windows then have no near-ties, so finite
 * differences do not cross a kink.
 */
export function distinctValues(shape: number[], step = 0.05, seed = 7): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const order = Array.from({ length: size }, (_, i) => i);
  let state = seed;
  for (let i = size - 1; i > 0; i--) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const values = Float32Array.from(order, (v) => (v - size / 2) * step);
  return tf.tensor(values, shape);
}

/**
 * Options for `checkOpGradients` on the heavier ops: 4 probed elements per tensor on GPU
 * backends (software-rendered here, where each probe's two forward passes and readbacks are
 * slow), the harness default elsewhere.
 */
export function gradientCheckOptions(backend: BackendName): GradientCheckOptions {
  return isGpuBackend(backend) ? { samples: 4 } : {};
}
