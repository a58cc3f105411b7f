import { describeEachBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { exampleAssets, softwareWebGpu, startBackend } from './live-session.js';

describe('the assets of the live examples', () => {
  it('live under the site root, wherever the site is served', () => {
    expect(exampleAssets('https://example.test/dynn/')).toEqual({
      coreModel: 'https://example.test/dynn/models/fashion-cnn/model.json',
      earlyExitModel: 'https://example.test/dynn/models/fashion-cnn-exits/model.json',
      calibration: 'https://example.test/dynn/models/fashion-cnn-exits/calibration.json',
      sample: 'https://example.test/dynn/data/fashion-mnist-sample.json',
      wasmPaths: 'https://example.test/dynn/tfjs-wasm/',
    });
  });
});

describeEachBackend('starting a backend for the live examples', (backend) => {
  it('reports the backend tfjs runs on, and the im2col shader only on a software WebGPU', async () => {
    // Where the browser test server serves the wasm binaries, as @dynn/testing gives them (the
    // backend matrix has started the backend already, so Node never reads this path).
    const started = await startBackend(backend, '/node_modules/@tensorflow/tfjs-backend-wasm/dist/');
    expect(started.backend).toBe(backend);
    const software = backend === 'webgpu' && (await softwareWebGpu());
    expect(started.note !== undefined).toBe(software);
    if (software) {
      expect(started.note).toMatch(/software adapter/);
      expect(tf.env().getBool('WEBGPU_CONV_SEPARATE_IM2COL_SHADER')).toBe(true);
    }
  });
});
