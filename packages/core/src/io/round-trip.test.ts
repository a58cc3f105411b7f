import { describeEachBackend, isGpuBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { loadModel } from './load-model.js';
import { MODEL_FORMAT } from './model-json.js';
import { GENERATED_BY } from './save-model.js';
import { bytesOf, savedArtifacts, testModel, testRuntime } from './test-fixtures.js';

const runtime = testRuntime();

describeEachBackend('model files in memory', (backend) => {
  it('round-trips graph, parameters and state bit for bit, leaking no tensor', async () => {
    const model = testModel(runtime, 3);
    if (!isGpuBackend(backend)) {
      // Values a lossy encoding would change: -0, a denormal, NaN, infinities, the largest float.
      model.params.get('scale/weight')!.assign(tf.tensor1d([-0, 1e-45, Number.NaN, 3.4028234663852886e38]));
      model.params.get('out/bias')!.assign(tf.tensor1d([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]));
    }
    const baseline = tf.memory().numTensors;
    const artifacts = await savedArtifacts(model);
    expect(tf.memory().numTensors).toBe(baseline);
    expect(artifacts).toMatchObject({ format: MODEL_FORMAT, generatedBy: GENERATED_BY, convertedBy: null });
    expect(artifacts.modelTopology).toEqual(model.graph);
    // Parameters first, then state, each under its full name.
    expect(artifacts.weightSpecs!.map((s) => s.name)).toEqual([
      ...model.params.keys(),
      ...model.state.keys(),
    ]);

    const loaded = await loadModel(runtime, tf.io.fromMemory(artifacts));
    expect(tf.memory().numTensors).toBe(baseline + model.params.size + model.state.size);
    expect(loaded.graph).toEqual(model.graph);
    expect(await bytesOf(loaded)).toEqual(await bytesOf(model));
    for (const [name, variable] of loaded.params) expect(variable.trainable, name).toBe(true);
    for (const [name, variable] of loaded.state) expect(variable.trainable, name).toBe(false);

    const x = tf.tensor2d([
      [0.5, -1, 2],
      [1, 0.25, -0.75],
    ]);
    const [a, b] = [await model.predict(x), await loaded.predict(x)];
    expect(new Uint8Array((await b.data()).buffer)).toEqual(new Uint8Array((await a.data()).buffer));
    tf.dispose([x, a, b]);
    loaded.dispose();
    expect(tf.memory().numTensors).toBe(baseline);
    model.dispose();
  });
});
