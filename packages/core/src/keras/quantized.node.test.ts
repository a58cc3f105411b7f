import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isDynnError } from '../errors.js';
import { createRuntime } from '../runtime.js';
import { importLayersModel } from './import.js';
import {
  convNet,
  denseNet,
  layersArtifacts,
  quantizeLayersArtifacts,
  randomizeWeights,
} from './quantized-fixtures.js';

const runtime = createRuntime();
let root = '';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'dynn-quantized-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const SHARD = 'group1-shard1of1.bin';

/** Writes artifacts as the tensorflowjs converter lays them out: model.json and one shard. */
async function writeModel(artifacts: tf.io.ModelArtifacts, folder: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  const modelJson = {
    format: 'layers-model',
    generatedBy: artifacts.generatedBy,
    convertedBy: 'TensorFlow.js Converter v4.22.0',
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [SHARD], weights: artifacts.weightSpecs }],
  };
  await writeFile(join(folder, 'model.json'), JSON.stringify(modelJson));
  await writeFile(join(folder, SHARD), new Uint8Array(artifacts.weightData as ArrayBuffer));
}

/**
 * A tfjs IO handler that reads model.json and its shards from disk the way tfjs' own http
 * handler does (the manifest's specs as they are, the shards concatenated): tfjs-layers'
 * loadLayersModel reads the file through it, independently of dynn's reader.
 */
function diskHandler(folder: string): tf.io.IOHandler {
  return {
    async load() {
      const json = JSON.parse(await readFile(join(folder, 'model.json'), 'utf8')) as tf.io.ModelJSON;
      const paths = json.weightsManifest.flatMap((group) => group.paths);
      const shards = await Promise.all(paths.map((p) => readFile(join(folder, p))));
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        weightSpecs: json.weightsManifest.flatMap((group) => group.weights),
        weightData: tf.io.CompositeArrayBuffer.join(shards.map((s) => new Uint8Array(s).buffer)),
      };
    },
  };
}

const NETS = [
  { name: 'dense', build: denseNet, input: [5, 6] },
  { name: 'conv', build: convNet, input: [3, 8, 8, 2] },
] as const;

describeEachBackend('quantized tfjs-layers files', () => {
  guardLeaks();

  for (const net of NETS) {
    it(`loads the ${net.name} net's uint8, uint16 and float16 files as tfjs-layers does`, async () => {
      const float = net.build();
      randomizeWeights(float, 70);
      const artifacts = await layersArtifacts(float);
      const x = seededUniform([...net.input], { seed: 12 });
      for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
        const folder = join(root, `${net.name}-${dtype}`);
        await writeModel(quantizeLayersArtifacts(artifacts, dtype), folder);
        const manifest = JSON.parse(await readFile(join(folder, 'model.json'), 'utf8'));
        expect(manifest.weightsManifest[0].weights[0].quantization.dtype).toBe(dtype);
        const reference = await tfl.loadLayersModel(diskHandler(folder));
        const model = await importLayersModel(runtime, join(folder, 'model.json'));
        const expected = reference.predict(x) as tf.Tensor;
        const actual = await model.predict(x);
        await expectClose(actual, expected, { label: `${net.name} ${dtype}` });
        tf.dispose([expected, actual]);
        model.dispose();
        reference.dispose();
      }
      tf.dispose(x);
      float.dispose();
    });
  }

  it('refuses hostile quantized files with a MODEL_FILE error that says what is wrong', async () => {
    const float = denseNet();
    const good = quantizeLayersArtifacts(await layersArtifacts(float), 'uint8');
    float.dispose();
    const hostile = async (
      name: string,
      edit: (json: { weightsManifest: { weights: Record<string, Record<string, unknown>>[] }[] }) => void,
      shardBytes?: number,
    ) => {
      const folder = join(root, `hostile-${name}`);
      await writeModel(good, folder);
      const file = join(folder, 'model.json');
      const json = JSON.parse(await readFile(file, 'utf8'));
      edit(json);
      await writeFile(file, JSON.stringify(json));
      if (shardBytes !== undefined) {
        const shard = await readFile(join(folder, SHARD));
        await writeFile(join(folder, SHARD), shard.subarray(0, shardBytes));
      }
      const error = await importLayersModel(runtime, file).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(isDynnError(error, 'MODEL_FILE'), `${name}: ${String(error)}`).toBe(true);
      expect(error!.message).toContain(file);
      expect(error!.message).not.toMatch(/written by dynn|save the model again/);
      return error!.message;
    };
    expect(
      await hostile('dtype', (j) => {
        j.weightsManifest[0]!.weights[0]!.quantization!.dtype = 'int4';
      }),
    ).toContain('weightsManifest[0].weights[0].quantization.dtype is "int4"');
    expect(
      await hostile('scale', (j) => {
        j.weightsManifest[0]!.weights[1]!.quantization!.scale = 'NaN';
      }),
    ).toContain('weightsManifest[0].weights[1].quantization.scale must be a finite number');
    expect(
      await hostile('original', (j) => {
        j.weightsManifest[0]!.weights[1]!.quantization!.original_dtype = 'int32';
      }),
    ).toContain('quantization.original_dtype is "int32"; only float32 weights can be quantized');
    const total = (good.weightData as ArrayBuffer).byteLength;
    const short = await hostile('short', () => undefined, total - 1);
    expect(short).toContain(
      `lists ${total} bytes of weights in weightsManifest[0], but its shards hold ${total - 1}`,
    );
    expect(short).toContain('copy model.json together with all of its shard files');
  });
});
