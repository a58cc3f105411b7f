// How a plugin tests its op with @dynn/testing, on every backend: docs/packages/testing.md quotes
// the region below, and vitest runs this file like any other test.
// #region test
import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  runOp,
  seededNormal,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { it } from 'vitest';
import { scaleOp } from '../core/layer-scale-plugin.js';

// cpu and wasm in Node; webgl, webgpu and wasm in Chromium.
describeEachBackend('layer-scale.Scale', () => {
  guardLeaks(); // fails any test whose tensors outlive it

  it('multiplies each channel by its scale', async () => {
    const x = seededNormal([4, 3], { seed: 1 }); // the same values on every backend
    const gamma = tf.tensor1d([0.5, 2, -1]);
    const { outputs } = await runOp(scaleOp, { inputs: [x], params: { gamma } }); // checks inferShape too
    const expected = tf.mul(x, gamma);
    await expectClose(outputs[0]!, expected); // 1e-5 on cpu and wasm, 1e-3 on GPU backends
    tf.dispose([x, gamma, expected, ...outputs]);
  });

  it('has gradients that match finite differences', async () => {
    const x = seededNormal([4, 3], { seed: 2 });
    await checkOpGradients(scaleOp, { inputs: [x] }); // every float input and every parameter
    x.dispose();
  });
});
// #endregion test
