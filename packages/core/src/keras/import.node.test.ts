import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isDynnError } from '../errors.js';
import { createRuntime } from '../runtime.js';
import { importLayersModel } from './import.js';

const runtime = createRuntime();
let folder = '';

/**
 * Writes a tfjs-layers model the way the tensorflowjs converter lays it out on disk: model.json
 * with a weights manifest, and one binary shard beside it.
 */
async function writeLayersModel(model: tfl.LayersModel, into: string): Promise<void> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const modelJson = {
    format: 'layers-model',
    generatedBy: saved!.generatedBy,
    convertedBy: null,
    modelTopology: saved!.modelTopology,
    weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: saved!.weightSpecs }],
  };
  await writeFile(join(into, 'model.json'), JSON.stringify(modelJson));
  await writeFile(join(into, 'group1-shard1of1.bin'), new Uint8Array(saved!.weightData as ArrayBuffer));
}

function smallConvNet(): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.conv2d({
        inputShape: [6, 6, 2],
        filters: 3,
        kernelSize: 3,
        activation: 'relu',
        name: 'conv',
      }),
      tfl.layers.flatten({ name: 'flat' }),
      tfl.layers.dense({ units: 2, name: 'out' }),
    ],
  });
}

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dynn-keras-'));
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

describeEachBackend('importLayersModel from files', () => {
  guardLeaks();

  it('reads model.json and its shard from a path, a folder and a file:// URL', async () => {
    const reference = smallConvNet();
    await writeLayersModel(reference, folder);
    const x = seededUniform([2, 6, 6, 2], { seed: 3 });
    const expected = reference.predict(x) as tf.Tensor;
    for (const source of [
      join(folder, 'model.json'),
      folder,
      pathToFileURL(join(folder, 'model.json')).href,
    ]) {
      const model = await importLayersModel(runtime, source);
      const actual = await model.predict(x);
      await expectClose(actual, expected, { label: source });
      tf.dispose(actual);
      model.dispose();
    }
    tf.dispose([x, expected]);
    reference.dispose();
  });

  it('names the file when it is missing', async () => {
    const missing = join(folder, 'absent', 'model.json');
    const error = await importLayersModel(runtime, missing).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDynnError(error, 'MODEL_FILE')).toBe(true);
    expect((error as Error).message).toContain(missing);
  });
});
