import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { activateBackend, describeEachBackend, inBrowser, testBackends } from './backends.js';

describe('testBackends', () => {
  it('lists cpu and wasm in Node (or DYNN_TEST_BACKENDS), webgl, webgpu and wasm in a browser', () => {
    const expected = inBrowser() ? ['webgl', 'webgpu', 'wasm'] : ['cpu', 'wasm'];
    const requested = inBrowser() ? undefined : process.env.DYNN_TEST_BACKENDS;
    if (!requested) {
      expect(testBackends()).toEqual(expected);
      return;
    }
    // DYNN_TEST_BACKENDS chooses among cpu, wasm and webgpu (Dawn) in Node.
    const wanted = requested.split(',').map((name) => name.trim());
    expect(testBackends()).toEqual(['cpu', 'wasm', 'webgpu'].filter((name) => wanted.includes(name)));
    expect(testBackends().length).toBeGreaterThan(0);
  });
});

describeEachBackend('backend initialisation', (backend) => {
  it('really runs on the requested backend', async () => {
    expect(tf.getBackend()).toBe(backend);
    const sum = tf.add(tf.scalar(2), tf.scalar(3));
    expect(await sum.data()).toEqual(new Float32Array([5]));
    sum.dispose();
  });
});

it('switches between backends on request', async () => {
  const [first, second] = testBackends();
  if (first === undefined || second === undefined) return;
  await activateBackend(first);
  expect(tf.getBackend()).toBe(first);
  await activateBackend(second);
  expect(tf.getBackend()).toBe(second);
});
