import { createRng, type Rng } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** Options for the seeded tensor helpers. */
export interface SeededOptions {
  /** Seed of the generator; the same seed gives the same values on every backend. */
  seed?: number;
}

function sampled(shape: number[], seed: number, sample: (rng: Rng) => number, int = false): tf.Tensor {
  const rng = createRng(seed);
  const size = shape.reduce((a, b) => a * b, 1);
  const values = int ? new Int32Array(size) : new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = sample(rng);
  return tf.tensor(values, shape, int ? 'int32' : 'float32');
}

/** A float32 tensor of uniform values in [min, max), reproducible from `seed`. */
export function seededUniform(
  shape: number[],
  { seed = 1, min = -1, max = 1 }: SeededOptions & { min?: number; max?: number } = {},
): tf.Tensor {
  return sampled(shape, seed, (rng) => min + (max - min) * rng.next());
}

/** A float32 tensor of normal values, reproducible from `seed`. */
export function seededNormal(
  shape: number[],
  { seed = 1, mean = 0, std = 1 }: SeededOptions & { mean?: number; std?: number } = {},
): tf.Tensor {
  return sampled(shape, seed, (rng) => mean + std * rng.normal());
}

/** An int32 tensor of integers in [0, n), reproducible from `seed` (labels, token ids). */
export function seededInts(shape: number[], n: number, { seed = 1 }: SeededOptions = {}): tf.Tensor {
  return sampled(shape, seed, (rng) => rng.int(n), true);
}
