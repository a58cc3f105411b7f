import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeEach } from 'vitest';

/**
 * Runs `body` and throws if it leaves more live tfjs tensors than there were before it began.
 * Returns what `body` returns (which must not be a tensor: that would be a leak by definition).
 */
export async function expectNoLeaks<T>(body: () => T | Promise<T>, label = 'body'): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await body();
  const after = tf.memory().numTensors;
  if (after !== before) {
    throw new Error(
      `${label} leaked ${after - before} tensor(s): ${before} live before, ${after} after. ` +
        'Dispose intermediates or wrap them in tf.tidy.',
    );
  }
  return result;
}

/**
 * Installs hooks in the current `describe` block (or file) that fail every test whose tensors
 * outlive it. Tensors created in `beforeAll` are part of the baseline and are not counted.
 */
export function guardLeaks(): void {
  let before = 0;
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach((context) => {
    const after = tf.memory().numTensors;
    // Only growth counts: a test may dispose tensors an earlier one created.
    if (after > before) {
      throw new Error(
        `test "${context.task.name}" leaked ${after - before} tensor(s) (${before} live before, ${after} after)`,
      );
    }
  });
}
