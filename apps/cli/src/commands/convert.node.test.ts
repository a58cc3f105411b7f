import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime, fileHandler, loadModel, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convert, formatConvertResult } from './convert.js';

let dir = '';
let source = '';
const x = () => tf.tidy(() => tf.randomUniform([7, 8], -1, 1, 'float32', 3));

/** A tfjs-layers classifier 8 -> 16 (relu) -> 5 (softmax) with random biases too. */
function classifier(): tfl.Sequential {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [8], units: 16, activation: 'relu', name: 'hidden' }),
      tfl.layers.dense({ units: 5, activation: 'softmax', name: 'classes' }),
    ],
  });
  model.setWeights(
    model.weights.map((w, i) => tf.randomUniform(w.shape as number[], -0.6, 0.6, 'float32', i)),
  );
  return model;
}

let reference: tfl.Sequential;

beforeAll(async () => {
  await useBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'dynn-convert-'));
  reference = classifier();
  await reference.save(fileHandler(join(dir, 'keras')));
  source = join(dir, 'keras', 'model.json');
});

afterAll(async () => {
  reference.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('convert', () => {
  it('writes float32 weights by default and reports their size', async () => {
    const result = await convert(source, join(dir, 'plain'));
    expect(result).toMatchObject({
      file: join(dir, 'plain', 'model.json'),
      nodes: 2,
      params: 8 * 16 + 16 + 16 * 5 + 5,
    });
    expect(result.bytes).toBe(4 * result.params);
    expect(result.floatBytes).toBe(result.bytes);
    expect(result.quantize).toBeUndefined();
    expect(result.maxAbsError).toBeUndefined();
    expect(formatConvertResult(result)).toBe(
      `wrote ${result.file}: 2 nodes, 229 parameters\nweights: 916 B (float32)`,
    );
  });

  for (const [quantize, perValue, maxError] of [
    ['uint8', 1, 0.05],
    ['uint16', 2, 1e-3],
    ['float16', 2, 5e-3],
  ] as const) {
    it(`writes ${quantize} weights, reporting the size and the output change`, async () => {
      const out = join(dir, quantize);
      const result = await convert(source, out, { quantize });
      expect(result.quantize).toBe(quantize);
      expect(result.floatBytes).toBe(4 * result.params);
      expect(result.bytes).toBe(perValue * result.params);
      expect(result.probeRows).toBe(64);
      expect(result.maxAbsError).toBeGreaterThan(0);
      expect(result.maxAbsError).toBeLessThan(maxError);
      expect(result.agreement).toBeGreaterThanOrEqual(0.9);
      expect(result.agreement).toBeLessThanOrEqual(1);
      const manifest = JSON.parse(await readFile(result.file, 'utf8'));
      for (const entry of manifest.weightsManifest[0].weights)
        expect(entry.quantization.dtype).toBe(quantize);
      const text = formatConvertResult(result);
      expect(text).toContain(`as ${quantize}, 916 B as float32 (${perValue === 1 ? '25.0' : '50.0'}%)`);
      expect(text).toMatch(
        /accuracy change on 64 random rows: max abs output difference \d\.\d\de[-+]\d+, argmax agreement \d+\.\d%/,
      );

      // The written file loads, dequantized, close to tfjs-layers' float model.
      const model = await loadModel(createRuntime(), out);
      const input = x();
      const [expected, actual] = [reference.predict(input) as tf.Tensor, await model.predict(input)];
      const worst = tf.tidy(() => tf.max(tf.abs(tf.sub(expected, actual))));
      expect((await worst.data())[0]).toBeLessThan(maxError);
      tf.dispose([input, expected, actual, worst]);
      model.dispose();
    });
  }

  it('converts a tfjs-layers file with quantized weights to the outputs tfjs-layers computes from it', async () => {
    // The file the tensorflowjs converter writes with --quantize_uint8: min/scale per weight.
    const folder = join(dir, 'keras-uint8');
    await mkdir(folder, { recursive: true });
    const json = JSON.parse(await readFile(source, 'utf8'));
    const shard = new Float32Array(
      (await readFile(join(dir, 'keras', json.weightsManifest[0].paths[0]))).buffer.slice(0),
    );
    const bytes: number[] = [];
    let offset = 0;
    for (const entry of json.weightsManifest[0].weights) {
      const size = entry.shape.reduce((a: number, b: number) => a * b, 1);
      const values = shard.subarray(offset, offset + size);
      offset += size;
      const [min, max] = [Math.min(...values), Math.max(...values)];
      const scale = max > min ? (max - min) / 255 : 1;
      for (const v of values) bytes.push(Math.round((v - min) / scale));
      entry.quantization = { dtype: 'uint8', min, scale, original_dtype: 'float32' };
    }
    json.weightsManifest[0].paths = ['group1-shard1of1.bin'];
    await writeFile(join(folder, 'model.json'), JSON.stringify(json));
    await writeFile(join(folder, 'group1-shard1of1.bin'), new Uint8Array(bytes));

    const layers = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest[0].weights,
        weightData: new Uint8Array(bytes).buffer,
      }),
    );
    const result = await convert(join(folder, 'model.json'), join(dir, 'from-uint8'));
    const model = await loadModel(createRuntime(), join(dir, 'from-uint8'));
    const input = x();
    const [expected, actual] = [layers.predict(input) as tf.Tensor, await model.predict(input)];
    const worst = tf.tidy(() => tf.max(tf.abs(tf.sub(expected, actual))));
    expect((await worst.data())[0]).toBeLessThanOrEqual(1e-5);
    expect(result.bytes).toBe(4 * result.params);
    tf.dispose([input, expected, actual, worst]);
    model.dispose();
    layers.dispose();
  });

  it('says why the accuracy change cannot be measured for a symbolic dimension besides the batch', async () => {
    const sequence = tfl.sequential({
      layers: [
        tfl.layers.dense({ inputShape: [null, 4] as unknown as number[], units: 3, name: 'per_step' }),
      ],
    });
    await sequence.save(fileHandler(join(dir, 'sequence')));
    sequence.dispose();
    const result = await convert(join(dir, 'sequence', 'model.json'), join(dir, 'sequence-q'), {
      quantize: 'float16',
    });
    expect(result.maxAbsError).toBeUndefined();
    expect(result.accuracyNote).toMatch(/symbolic dimension .* besides the batch/);
    expect(formatConvertResult(result)).toContain('accuracy change not measured: input');
  });
});
