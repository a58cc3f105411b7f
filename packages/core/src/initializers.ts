import * as tf from '@tensorflow/tfjs-core';
import type { DType, Initializer } from './ir.js';
import type { Rng } from './random.js';

/**
 * Creates a tensor from an initializer spec. Random initialisers draw from the seeded `rng` in
 * JavaScript, so a model created with the same seed has the same weights on every backend.
 */
export function initTensor(init: Initializer, shape: readonly number[], dtype: DType, rng: Rng): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  switch (init.kind) {
    case 'zeros':
      return tf.zeros([...shape], dtype);
    case 'ones':
      return tf.ones([...shape], dtype);
    case 'constant':
      return tf.fill([...shape], init.value, dtype);
    case 'concat': {
      const total = init.parts.reduce((sum, part) => sum + part.size, 0);
      const last = shape[shape.length - 1];
      if (total !== last)
        throw new Error(`concat initializer parts sum to ${total}, not the last dimension ${last}`);
      const parts = init.parts.map((part) =>
        initTensor(part.init, [...shape.slice(0, -1), part.size], dtype, rng),
      );
      const joined = tf.concat(parts, -1);
      tf.dispose(parts);
      return joined;
    }
    default: {
      const values = new Float32Array(size);
      const sample = samplerFor(init, rng);
      for (let i = 0; i < size; i++) values[i] = sample();
      return tf.tensor(values, [...shape], dtype);
    }
  }
}

/**
 * @internal A sampler of a random initializer: what `initTensor` draws, one value per call (host
 * tables fill their rows with it).
 */
export function samplerFor(init: Initializer, rng: Rng): () => number {
  switch (init.kind) {
    case 'glorotUniform': {
      const limit = Math.sqrt(6 / Math.max(1, init.fanIn + init.fanOut));
      return () => (2 * rng.next() - 1) * limit;
    }
    case 'heNormal': {
      const std = Math.sqrt(2 / Math.max(1, init.fanIn));
      return () => std * rng.normal();
    }
    case 'uniform':
      return () => init.min + (init.max - init.min) * rng.next();
    case 'normal':
      return () => init.mean + init.std * rng.normal();
    default:
      throw new Error(`initializer '${init.kind}' is not random`);
  }
}
