import { activateBackend, guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from './load-model.js';
import { saveModel } from './save-model.js';
import { bytesOf, expectDynnError, savedArtifacts, testModel, testRuntime } from './test-fixtures.js';

const runtime = testRuntime();

describe('model files in browser storage', () => {
  guardLeaks();
  let model: ReturnType<typeof testModel>;
  beforeAll(async () => {
    await activateBackend('cpu');
    model = testModel(runtime, 6);
  });
  afterAll(async () => {
    model.dispose();
    for (const url of [
      'indexeddb://dynn-io-test',
      'indexeddb://dynn-io-hostile',
      'localstorage://dynn-io-test',
    ]) {
      await tf.io.removeModel(url).catch(() => undefined);
    }
  });

  for (const url of ['indexeddb://dynn-io-test', 'localstorage://dynn-io-test']) {
    it(`round-trips bit for bit through ${url}`, async () => {
      const before = tf.memory().numTensors;
      await saveModel(model, url);
      expect(tf.memory().numTensors).toBe(before);
      const loaded = await loadModel(runtime, url);
      expect(loaded.graph).toEqual(model.graph);
      expect(await bytesOf(loaded)).toEqual(await bytesOf(model));
      loaded.dispose();
    });
  }

  it('checks what IndexedDB returns like any file', async () => {
    const artifacts = await savedArtifacts(model);
    const topology = JSON.parse(JSON.stringify(artifacts.modelTopology));
    topology.nodes[0].attrs = JSON.parse('{"__proto__": {"polluted": true}}');
    const [store] = tf.io.getSaveHandlers('indexeddb://dynn-io-hostile');
    await store!.save!({ ...artifacts, modelTopology: topology });
    const before = tf.memory().numTensors;
    await expectDynnError(
      loadModel(runtime, 'indexeddb://dynn-io-hostile'),
      'MODEL_FILE',
      'indexeddb://dynn-io-hostile',
      "'__proto__'",
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses plain paths for saving in a browser', async () => {
    await expectDynnError(saveModel(model, './models/x'), 'INVALID_OPTION', "'./models/x'");
  });
});
