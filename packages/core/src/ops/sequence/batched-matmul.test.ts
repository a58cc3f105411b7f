import { describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { it } from 'vitest';
import { batchMatMul } from './batched-matmul.js';

describeEachBackend('batchMatMul', () => {
  guardLeaks();

  it("matches tfjs's batched matMul and its gradients", async () => {
    const a = seededUniform([3, 2, 4], { seed: 1 }) as tf.Tensor3D;
    const b = seededUniform([3, 4, 5], { seed: 2 }) as tf.Tensor3D;
    const weights = seededUniform([3, 2, 5], { seed: 3 });
    const objective = (f: typeof batchMatMul) => (x: tf.Tensor, y: tf.Tensor) =>
      tf.sum(tf.mul(f(x as tf.Tensor3D, y as tf.Tensor3D), weights));
    const value = batchMatMul(a, b);
    const reference = tf.matMul(a, b);
    await expectClose(value, reference, { label: 'value' });
    const grads = tf.grads(objective(batchMatMul))([a, b]);
    const referenceGrads = tf.grads(objective((x, y) => tf.matMul(x, y)))([a, b]);
    await expectClose(grads[0]!, referenceGrads[0]!, { label: 'gradient of a' });
    await expectClose(grads[1]!, referenceGrads[1]!, { label: 'gradient of b' });
    tf.dispose([a, b, weights, value, reference, ...grads, ...referenceGrads]);
  });
});
