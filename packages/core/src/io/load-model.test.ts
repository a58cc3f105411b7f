import { activateBackend, guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Model } from '../model.js';
import { DEFAULT_LOAD_LIMITS } from './limits.js';
import { loadModel } from './load-model.js';
import { saveModel } from './save-model.js';
import {
  bytesOf,
  expectDynnError,
  MemoryReader,
  modelFiles,
  savedArtifacts,
  testModel,
  testRuntime,
} from './test-fixtures.js';

const runtime = testRuntime();
const URL = 'memory://models/test/model.json';

type Json = Record<string, unknown> & {
  modelTopology: Record<string, unknown> & {
    nodes: Record<string, unknown>[];
    params: Record<string, unknown>[];
  };
  weightsManifest: { paths: string[]; weights: Record<string, unknown>[] }[];
};

describe('loadModel on hostile and broken files', () => {
  guardLeaks();
  let model: Model;
  let artifacts: tf.io.ModelArtifacts;
  let json: Json;
  let shard: ArrayBuffer;

  beforeAll(async () => {
    await activateBackend('cpu');
    model = testModel(runtime);
    artifacts = await savedArtifacts(model);
    ({ json, shard } = modelFiles(artifacts) as { json: Json; shard: ArrayBuffer });
  });
  afterAll(() => model.dispose());

  /** A reader over model.json changed by `edit` (a deep copy of the good one) and the good shard. */
  const readerFor = (
    edit: (copy: Json) => void = () => undefined,
    shards = { 'group1-shard1of1.bin': shard },
  ) => {
    const copy = JSON.parse(JSON.stringify(json)) as Json;
    edit(copy);
    return new MemoryReader(URL, JSON.stringify(copy), shards);
  };

  /** Loads through `reader`, expecting a DynnError with `code` and `parts`, no shard read and no tensor left. */
  const expectRefused = async (
    reader: MemoryReader,
    code: Parameters<typeof expectDynnError>[1],
    ...parts: string[]
  ) => {
    const before = tf.memory().numTensors;
    await expectDynnError(loadModel(runtime, reader), code, URL, ...parts);
    expect(reader.shardsRead).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
  };

  it('loads the unmodified file through a reader', async () => {
    const loaded = await loadModel(runtime, readerFor());
    expect(await bytesOf(loaded)).toEqual(await bytesOf(model));
    loaded.dispose();
  });

  it('refuses text that is not JSON', async () => {
    await expectRefused(
      new MemoryReader(URL, '<html>404 Not Found</html>'),
      'MODEL_FILE',
      'is not valid JSON',
    );
    await expectRefused(new MemoryReader(URL, ''), 'MODEL_FILE', 'is not valid JSON');
    await expectRefused(new MemoryReader(URL, '[1, 2]'), 'MODEL_FILE', 'model.json must be an object');
  });

  it('refuses nesting 100k deep without overflowing the stack', async () => {
    const deep = `{"modelTopology": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    await expectRefused(
      new MemoryReader(URL, deep),
      'MODEL_FILE',
      'Nesting deeper than 64 levels',
      'maxDepth',
    );
    // Brackets inside strings do not count.
    const quoted = readerFor((j) => {
      j.modelTopology.nodes[0]!.name = '['.repeat(2000);
    });
    await expectRefused(quoted, 'MODEL_FILE', 'modelTopology.nodes[0].name', 'maxNameLength');
  });

  it('refuses nesting 100k deep in artifacts given as objects', async () => {
    let deep: unknown[] = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const hostile = { ...artifacts, modelTopology: { ...(artifacts.modelTopology as object), extra: deep } };
    await expectDynnError(
      loadModel(runtime, tf.io.fromMemory(hostile)),
      'MODEL_FILE',
      'maxDepth',
      'modelTopology.extra',
    );
  });

  it('refuses __proto__, constructor and prototype keys anywhere', async () => {
    const text = JSON.stringify(json).replace('"attrs":{', '"attrs":{"__proto__":{"polluted":true},');
    await expectRefused(
      new MemoryReader(URL, text),
      'MODEL_FILE',
      "has the key '__proto__'",
      'modelTopology.nodes[0].attrs',
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const withConstructor = readerFor((j) => {
      (j as Record<string, unknown>).userDefinedMetadata = { deep: { constructor: { prototype: 1 } } };
    });
    await expectRefused(withConstructor, 'MODEL_FILE', "has the key 'constructor'");
    const topology = JSON.parse('{"prototype": 1}') as object;
    await expectDynnError(
      loadModel(
        runtime,
        tf.io.fromMemory({
          ...artifacts,
          modelTopology: { ...(artifacts.modelTopology as object), ...topology },
        }),
      ),
      'MODEL_FILE',
      "has the key 'prototype'",
    );
  });

  it('refuses absurd shapes before allocating anything', async () => {
    const inManifest = readerFor((j) => {
      j.modelTopology.params[0]!.shape = [1e9, 1e9];
      j.weightsManifest[0]!.weights[0]!.shape = [1e9, 1e9];
    });
    await expectRefused(
      inManifest,
      'MODEL_FILE',
      'weightsManifest[0].weights[0].shape [1000000000, 1000000000]',
      'maxTensorElements',
    );
    const inGraph = readerFor((j) => {
      j.modelTopology.params[0]!.shape = [1e9, 1e9];
    });
    await expectRefused(
      inGraph,
      'MODEL_FILE',
      'modelTopology.params[0].shape [1000000000, 1000000000]',
      'maxTensorElements',
    );
    const negative = readerFor((j) => {
      j.modelTopology.params[0]!.shape = [-3, 4];
    });
    await expectRefused(negative, 'MODEL_FILE', 'modelTopology.params[0].shape[0] is -3');
    const fractional = readerFor((j) => {
      j.weightsManifest[0]!.weights[1]!.shape = [0.5];
    });
    await expectRefused(fractional, 'MODEL_FILE', 'weightsManifest[0].weights[1].shape[0] is 0.5');
    // Many tensors each under the element limit can still add up past the byte limit.
    const many = readerFor((j) => {
      for (let i = 0; i < 20; i++)
        j.modelTopology.params.push({ ...j.modelTopology.params[0], name: `big${i}`, shape: [2 ** 27] });
    });
    await expectRefused(many, 'MODEL_FILE', 'maxWeightBytes');
  });

  it('refuses a manifest that disagrees with the graph', async () => {
    const wrongShape = readerFor((j) => {
      j.weightsManifest[0]!.weights[0]!.shape = [4, 3];
    });
    await expectRefused(
      wrongShape,
      'MODEL_FILE',
      "stores parameter 'hidden/kernel' as float32[4,3]",
      'float32[3,4]',
    );
    const wrongDtype = readerFor((j) => {
      j.weightsManifest[0]!.weights[0]!.dtype = 'int32';
    });
    await expectRefused(wrongDtype, 'MODEL_FILE', "stores parameter 'hidden/kernel' as int32");
    const unknownDtype = readerFor((j) => {
      j.weightsManifest[0]!.weights[0]!.dtype = 'complex64';
    });
    await expectRefused(unknownDtype, 'MODEL_FILE', 'weightsManifest[0].weights[0].dtype is "complex64"');
    const missing = readerFor((j) => {
      j.weightsManifest[0]!.weights.pop();
    });
    await expectRefused(missing, 'MODEL_FILE', "has no stored weights for state tensor 'scale/mask'");
    const extra = readerFor((j) => {
      j.weightsManifest[0]!.weights.push({ name: 'stowaway', shape: [1], dtype: 'float32' });
    });
    await expectRefused(extra, 'MODEL_FILE', 'stores weights the graph does not declare: stowaway');
    const duplicate = readerFor((j) => {
      j.weightsManifest[0]!.weights.push(j.weightsManifest[0]!.weights[0]!);
    });
    await expectRefused(duplicate, 'MODEL_FILE', "lists weight 'hidden/kernel' twice");
  });

  it('refuses quantization fields that tfjs could not decode', async () => {
    const quantized = (quantization: unknown, index = 0) =>
      readerFor((j) => {
        j.weightsManifest[0]!.weights[index]!.quantization = quantization;
      });
    await expectRefused(
      quantized({ dtype: 'int4', min: 0, scale: 1 }),
      'MODEL_FILE',
      'weightsManifest[0].weights[0].quantization.dtype is "int4"',
      'uint8, uint16, float16',
    );
    await expectRefused(
      quantized('uint8'),
      'MODEL_FILE',
      'weightsManifest[0].weights[0].quantization must be an object',
    );
    await expectRefused(
      quantized({ dtype: 'uint8', min: 0, scale: 'NaN' }),
      'MODEL_FILE',
      'weightsManifest[0].weights[0].quantization.scale must be a finite number',
    );
    await expectRefused(
      quantized({ dtype: 'uint16', scale: 0.5 }),
      'MODEL_FILE',
      'weightsManifest[0].weights[0].quantization.min must be a finite number',
    );
    await expectRefused(
      quantized({ dtype: 'uint8', min: 0, scale: 1, original_dtype: 'int32' }),
      'MODEL_FILE',
      'quantization.original_dtype is "int32"',
    );
    // The int32 state tensor: only float32 weights are ever quantized.
    const int32Index = json.weightsManifest[0]!.weights.findIndex((w) => w.dtype === 'int32');
    await expectRefused(
      quantized({ dtype: 'uint8', min: 0, scale: 1 }, int32Index),
      'MODEL_FILE',
      `weightsManifest[0].weights[${int32Index}].quantization is set on a weight of dtype "int32"`,
    );
    // Well-formed quantization over float32 data: the shard now holds more bytes than the manifest lists.
    const reader = quantized({ dtype: 'uint8', min: 0, scale: 1 });
    await expectDynnError(loadModel(runtime, reader), 'MODEL_FILE', URL, 'lists', 'but its shards hold more');
  });

  it('refuses shards whose byte count differs from the manifest', async () => {
    const truncated = readerFor(undefined, { 'group1-shard1of1.bin': shard.slice(0, shard.byteLength - 3) });
    await expectDynnError(
      loadModel(runtime, truncated),
      'MODEL_FILE',
      URL,
      `lists ${shard.byteLength} bytes`,
      `hold ${shard.byteLength - 3} bytes`,
    );
    const padded = new Uint8Array(shard.byteLength + 8);
    padded.set(new Uint8Array(shard));
    const tooLong = readerFor(undefined, { 'group1-shard1of1.bin': padded.buffer });
    await expectDynnError(loadModel(runtime, tooLong), 'MODEL_FILE', URL, `${shard.byteLength + 8} bytes`);
    const noPaths = readerFor((j) => {
      j.weightsManifest[0]!.paths = [];
    });
    await expectRefused(noPaths, 'MODEL_FILE', 'weightsManifest[0].paths is empty');
    const short = tf.io.fromMemory({ ...artifacts, weightData: shard.slice(0, 16) });
    await expectDynnError(
      loadModel(runtime, short),
      'MODEL_FILE',
      `holds 16 bytes of weight data, but its weight specs need ${shard.byteLength}`,
    );
  });

  it('refuses shard paths that leave the model folder', async () => {
    for (const path of [
      '../secret.bin',
      '/etc/passwd',
      'https://evil.example/w.bin',
      'a/../../b.bin',
      'C:\\w.bin',
    ]) {
      const reader = readerFor((j) => {
        j.weightsManifest[0]!.paths = [path];
      });
      await expectRefused(
        reader,
        'MODEL_FILE',
        'weightsManifest[0].paths[0]',
        'must be relative to model.json',
      );
    }
  });

  it('names the op and the package to add for an unknown op', async () => {
    const reader = readerFor((j) => {
      j.modelTopology.nodes[1]!.op = 'fancy.Warp';
      (j.modelTopology.opsets as Record<string, number>).fancy = 1;
    });
    await expectRefused(
      reader,
      'UNKNOWN_OP',
      "'fancy.Warp'",
      "node 'scale'",
      "the plugin package that provides domain 'fancy'",
    );
    const undeclared = readerFor((j) => {
      j.modelTopology.nodes[1]!.op = 'fancy.Warp';
    });
    await expectRefused(undeclared, 'MODEL_FILE', "do not list domain 'fancy'");
    const malformed = readerFor((j) => {
      j.modelTopology.nodes[1]!.op = 'not an op';
    });
    await expectRefused(malformed, 'MODEL_FILE', "is 'not an op', not an op type");
  });

  it('names the plugin to upgrade for a newer opset or spec version', async () => {
    const newer = readerFor((j) => {
      (j.modelTopology.opsets as Record<string, number>).iotest = 2;
    });
    await expectRefused(newer, 'OP_VERSION', 'opset iotest v2', 'Upgrade @dynn/iotest');
    const spec = readerFor((j) => {
      j.modelTopology.specVersion = 2;
    });
    await expectRefused(spec, 'MODEL_FILE', 'graph spec version 2', 'Upgrade @dynn/core');
  });

  it('refuses files of other formats and graphs that do not validate', async () => {
    await expectRefused(
      readerFor((j) => {
        j.format = 'layers-model';
      }),
      'MODEL_FILE',
      "is a 'layers-model' model file",
    );
    const badAttr = readerFor((j) => {
      (j.modelTopology.nodes[0]!.attrs as Record<string, unknown>).units = 'four';
    });
    await expectRefused(badAttr, 'INVALID_ATTR', "Node 'hidden'", 'units');
    const dangling = readerFor((j) => {
      j.modelTopology.nodes[1]!.inputs = ['nowhere'];
    });
    await expectRefused(dangling, 'INVALID_GRAPH', "reads value 'nowhere'");
    const noInputs = readerFor((j) => {
      delete (j.modelTopology as Record<string, unknown>).inputs;
    });
    await expectRefused(noInputs, 'MODEL_FILE', 'modelTopology.inputs must be an array');
  });

  it('refuses artifacts with shared or non-JSON values', async () => {
    const topology = JSON.parse(JSON.stringify(artifacts.modelTopology)) as Json['modelTopology'];
    topology.nodes[1]!.attrs = topology.nodes[0]!.attrs as Record<string, unknown>;
    await expectDynnError(
      loadModel(runtime, tf.io.fromMemory({ ...artifacts, modelTopology: topology })),
      'MODEL_FILE',
      'refers to an object seen before',
    );
    const withDate = { ...(artifacts.modelTopology as object), when: new Date(0) };
    await expectDynnError(
      loadModel(runtime, tf.io.fromMemory({ ...artifacts, modelTopology: withDate })),
      'MODEL_FILE',
      'modelTopology.when is Date',
    );
  });

  it('applies configurable limits', async () => {
    const text = JSON.stringify(json);
    const small = { maxModelJsonBytes: 100 };
    const bigFile = {
      url: URL,
      readModelJson: async (maxBytes: number) => {
        expect(maxBytes).toBe(100);
        throw new Error('the reader enforces maxBytes');
      },
      readShard: async () => new ArrayBuffer(0),
    };
    await expectDynnError(
      loadModel(runtime, bigFile, { limits: small }),
      'MODEL_FILE',
      URL,
      'the reader enforces maxBytes',
    );
    await expectDynnError(
      loadModel(runtime, new MemoryReader(URL, text), { limits: { maxWeightBytes: 10 } }),
      'MODEL_FILE',
      'maxWeightBytes = 10',
    );
    await expectDynnError(
      loadModel(runtime, new MemoryReader(URL, text), { limits: { maxDepth: 3 } }),
      'MODEL_FILE',
      'maxDepth = 3',
    );
    await expectDynnError(
      loadModel(runtime, new MemoryReader(URL, text), { limits: { maxListLength: 2 } }),
      'MODEL_FILE',
      'maxListLength = 2',
    );
    await expectDynnError(
      loadModel(runtime, new MemoryReader(URL, text), { limits: { maxRank: 1 } }),
      'MODEL_FILE',
      'maxRank = 1',
    );
    await expectDynnError(
      loadModel(runtime, new MemoryReader(URL, text), { limits: { maxNameLength: 4 } }),
      'MODEL_FILE',
      'maxNameLength = 4',
    );
    await expectDynnError(
      loadModel(runtime, new MemoryReader(URL, text), { limits: { maxTensorElements: 11 } }),
      'MODEL_FILE',
      'maxTensorElements = 11',
    );
    await expectDynnError(
      loadModel(runtime, readerFor(), { limits: { maxDepth: -1 } }),
      'INVALID_OPTION',
      'maxDepth',
    );
    await expectDynnError(
      loadModel(runtime, readerFor(), { limits: { maxBytes: 1 } as object }),
      'INVALID_OPTION',
      "'maxBytes'",
    );
    // The defaults let this file through, and so do raised limits.
    const loaded = await loadModel(runtime, readerFor(), {
      limits: { maxWeightBytes: 2 * DEFAULT_LOAD_LIMITS.maxWeightBytes },
    });
    loaded.dispose();
  });

  it('refuses locations it has no handler for, naming them', async () => {
    await expectDynnError(
      loadModel(runtime, 'ftp://example.com/model.json'),
      'INVALID_OPTION',
      "'ftp://example.com/model.json'",
    );
    await expectDynnError(
      saveModel(model, 'ftp://example.com/model.json'),
      'INVALID_OPTION',
      "'ftp://example.com/model.json'",
    );
  });

  it('refuses to save graphs a file cannot hold, and disposed models', async () => {
    const sink = tf.io.withSaveHandler(async () => ({
      modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' },
    }));
    const infinite = testModel(runtime, 1, { note: { limit: Number.POSITIVE_INFINITY } });
    await expectDynnError(saveModel(infinite, sink), 'MODEL_FILE', "'limit' is Infinity", 'JSON data only');
    infinite.dispose();
    await expectDynnError(saveModel(infinite, sink), 'INVALID_OPTION', 'disposed');
    const polluting = testModel(runtime, 1, { note: JSON.parse('{"__proto__": 1}') });
    await expectDynnError(
      saveModel(polluting, sink),
      'MODEL_FILE',
      "graph.nodes[1].attrs.note has the key '__proto__'",
    );
    polluting.dispose();
  });

  it('wraps a failing tf.io handler in a typed error', async () => {
    const failing = {
      load: async () => Promise.reject(new Error('quota exceeded')),
      save: async () => Promise.reject(new Error('disk full')),
    };
    await expectDynnError(loadModel(runtime, failing), 'MODEL_FILE', 'quota exceeded');
    await expectDynnError(saveModel(model, failing), 'MODEL_FILE', 'disk full');
  });
});
