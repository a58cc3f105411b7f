import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activateBackend, guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileHandler } from './file-handler.js';
import { loadModel } from './load-model.js';
import { MODEL_FORMAT } from './model-json.js';
import { GENERATED_BY, saveModel } from './save-model.js';
import { bytesOf, expectDynnError, testModel, testRuntime } from './test-fixtures.js';

const runtime = testRuntime();

describe('model files on disk (file://)', () => {
  guardLeaks();
  let root: string;
  let count = 0;
  /** A fresh folder path (not created) under the test's temporary root. */
  const folder = () => join(root, `model-${++count}`);

  beforeAll(async () => {
    await activateBackend('cpu');
    root = await mkdtemp(join(tmpdir(), 'dynn-io-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('round-trips bit for bit through model.json and 4 MiB-style shards, leaking no tensor', async () => {
    const model = testModel(runtime, 2);
    const dir = join(folder(), 'nested', 'deeper');
    const baseline = tf.memory().numTensors;
    // 64-byte shards split the 128 bytes of weights (mid-tensor, as tfjs allows) into two files.
    await saveModel(model, `file://${dir}`, { shardBytes: 64 });
    expect(tf.memory().numTensors).toBe(baseline);
    expect((await readdir(dir)).sort()).toEqual([
      'group1-shard1of2.bin',
      'group1-shard2of2.bin',
      'model.json',
    ]);
    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    expect(json).toMatchObject({ format: MODEL_FORMAT, generatedBy: GENERATED_BY, convertedBy: null });
    expect(json.modelTopology).toEqual(model.graph);
    expect(json.weightsManifest).toEqual([
      {
        paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'],
        weights: [...model.params, ...model.state].map(([name, t]) => ({
          name,
          shape: t.shape,
          dtype: t.dtype,
        })),
      },
    ]);

    for (const source of [`file://${dir}`, dir, join(dir, 'model.json'), fileHandler(dir)]) {
      const loaded = await loadModel(runtime, source);
      expect(tf.memory().numTensors).toBe(baseline + model.params.size + model.state.size);
      expect(await bytesOf(loaded)).toEqual(await bytesOf(model));
      const x = tf.tensor2d([[1, -2, 0.5]]);
      const [a, b] = [await model.predict(x), await loaded.predict(x)];
      expect(new Uint8Array((await b.data()).buffer)).toEqual(new Uint8Array((await a.data()).buffer));
      tf.dispose([x, a, b]);
      loaded.dispose();
    }
    expect(tf.memory().numTensors).toBe(baseline);
    model.dispose();
  });

  it('saves to a path ending in .json and loads it as plain tfjs artifacts', async () => {
    const model = testModel(runtime);
    const path = join(folder(), 'my-model.json');
    await saveModel(model, path);
    const artifacts = await fileHandler(path).load();
    expect(artifacts.format).toBe(MODEL_FORMAT);
    expect(artifacts.weightSpecs!.map((s) => s.name)).toEqual([
      ...model.params.keys(),
      ...model.state.keys(),
    ]);
    const data = tf.io.CompositeArrayBuffer.join(artifacts.weightData!);
    expect(data.byteLength).toBe(128);
    const again = await loadModel(runtime, tf.io.fromMemory(artifacts));
    expect(await bytesOf(again)).toEqual(await bytesOf(model));
    again.dispose();
    model.dispose();
  });

  describe('broken files', () => {
    let model: ReturnType<typeof testModel>;
    let dir: string;
    beforeAll(async () => {
      model = testModel(runtime);
    });
    afterAll(() => model.dispose());

    /** Saves the model to a fresh folder in two shards and returns the folder. */
    const saved = async () => {
      dir = folder();
      await saveModel(model, dir, { shardBytes: 64 });
      return dir;
    };
    const expectFailedLoad = async (
      source: string,
      code: Parameters<typeof expectDynnError>[1],
      ...parts: string[]
    ) => {
      const before = tf.memory().numTensors;
      await expectDynnError(loadModel(runtime, source), code, ...parts);
      expect(tf.memory().numTensors).toBe(before);
    };

    it('refuses a truncated shard before reading any shard', async () => {
      const path = await saved();
      await truncate(join(path, 'group1-shard2of2.bin'), 10);
      const shardsRead: string[] = [];
      const spy = fileHandler(path);
      const readShard = spy.readShard.bind(spy);
      spy.readShard = (shard, maxBytes) => {
        shardsRead.push(shard);
        return readShard(shard, maxBytes);
      };
      await expectDynnError(
        loadModel(runtime, spy),
        'MODEL_FILE',
        join(path, 'model.json'),
        'lists 128 bytes of weights',
        'group1-shard1of2.bin: 64, group1-shard2of2.bin: 10',
      );
      expect(shardsRead).toEqual([]);
    });

    it('refuses shards longer than the manifest says', async () => {
      const path = await saved();
      await appendFile(join(path, 'group1-shard1of2.bin'), new Uint8Array(4));
      await expectFailedLoad(
        path,
        'MODEL_FILE',
        'lists 128 bytes of weights',
        'hold 132 bytes',
        'group1-shard1of2.bin: 68',
      );
    });

    it('refuses a graph and manifest edited together into shapes the ops reject', async () => {
      const path = await saved();
      const jsonPath = join(path, 'model.json');
      const json = JSON.parse(await readFile(jsonPath, 'utf8'));
      // The graph and manifest agree on a bigger kernel, but the shards are the old size.
      json.modelTopology.params[0].shape = [3, 5];
      json.weightsManifest[0].weights[0].shape = [3, 5];
      await writeFile(jsonPath, JSON.stringify(json));
      await expectFailedLoad(path, 'SHAPE_MISMATCH', jsonPath, "'hidden/kernel'");
      json.modelTopology.params[0].shape = [3, 4];
      json.weightsManifest[0].weights[0].shape = [3, 4];
      json.weightsManifest[0].weights.push({ name: 'scale/extra', shape: [2], dtype: 'float32' });
      await writeFile(jsonPath, JSON.stringify(json));
      await expectFailedLoad(
        path,
        'MODEL_FILE',
        jsonPath,
        'stores weights the graph does not declare: scale/extra',
      );
    });

    it('refuses a missing shard, naming it', async () => {
      const path = await saved();
      await rm(join(path, 'group1-shard1of2.bin'));
      await expectFailedLoad(
        path,
        'MODEL_FILE',
        `weight shard ${join(path, 'group1-shard1of2.bin')} does not exist`,
      );
    });

    it('refuses a missing model.json, one that is not JSON, and one over the size limit', async () => {
      await expectFailedLoad(
        join(root, 'nowhere'),
        'MODEL_FILE',
        join(root, 'nowhere', 'model.json'),
        'does not exist',
      );
      const path = await saved();
      await writeFile(join(path, 'model.json'), '{"modelTopology": ');
      await expectFailedLoad(path, 'MODEL_FILE', 'is not valid JSON');
      await writeFile(join(path, 'model.json'), new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
      await expectFailedLoad(path, 'MODEL_FILE', 'is not UTF-8 text');
      await writeFile(join(path, 'model.json'), `{"pad": "${'x'.repeat(2000)}"}`);
      await expectDynnError(
        loadModel(runtime, path, { limits: { maxModelJsonBytes: 1000 } }),
        'MODEL_FILE',
        'model.json is 2011 bytes',
        'maxModelJsonBytes = 1000',
      );
      await mkdir(join(path, 'sub', 'model.json'), { recursive: true });
      await expectFailedLoad(join(path, 'sub'), 'MODEL_FILE', 'is not a file');
    });

    it('keeps the saved model when a later save fails midway', async () => {
      const path = folder();
      await saveModel(model, path);
      const before = await bytesOf(model);
      expect((await readdir(path)).sort()).toEqual(['group1-shard1of1.bin', 'model.json']);
      const oldJson = await readFile(join(path, 'model.json'), 'utf8');
      // A folder where the second shard must go makes the save fail after writing the first one.
      await mkdir(join(path, 'group1-shard2of2.bin'));
      const other = testModel(runtime, 5);
      await expectDynnError(
        saveModel(other, path, { shardBytes: 64 }),
        'MODEL_FILE',
        join(path, 'model.json'),
        'could not be saved',
      );
      other.dispose();
      expect(await readFile(join(path, 'model.json'), 'utf8')).toBe(oldJson);
      // No temporary file is left behind, and the old model loads with its own weights.
      expect((await readdir(path)).filter((name) => name.includes('.tmp-'))).toEqual([]);
      const loaded = await loadModel(runtime, path);
      expect(await bytesOf(loaded)).toEqual(before);
      loaded.dispose();
    });

    it('refuses options that do not apply', async () => {
      await expectDynnError(
        saveModel(model, fileHandler(folder()), { shardBytes: 8 }),
        'INVALID_OPTION',
        'fileHandler(path, { shardBytes })',
      );
      expect(() => fileHandler(folder(), { shardBytes: 0 })).toThrow(/shardBytes must be a positive integer/);
    });
  });
});
