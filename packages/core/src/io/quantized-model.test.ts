import { describeEachBackend, expectClose, guardLeaks, isGpuBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { loadModel } from './load-model.js';
import type { QuantizationDType } from './quantize.js';
import { saveModel } from './save-model.js';
import {
  bytesOf,
  expectDynnError,
  MemoryReader,
  modelFiles,
  testModel,
  testRuntime,
} from './test-fixtures.js';

const runtime = testRuntime();

/** Saves `model` quantized through tf.io.withSaveHandler and returns the artifacts. */
async function quantizedArtifacts(
  model: ReturnType<typeof testModel>,
  quantize: QuantizationDType,
): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await saveModel(
    model,
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
    { quantize },
  );
  return captured!;
}

describeEachBackend('quantized model files', (backend) => {
  guardLeaks();

  for (const quantize of ['uint8', 'uint16', 'float16'] as const) {
    it(`saves float32 weights as ${quantize} and loads them back dequantized`, async () => {
      const model = testModel(runtime, 5);
      const artifacts = await quantizedArtifacts(model, quantize);
      const specs = artifacts.weightSpecs!;
      // Only float32 tensors are quantized; the int32 and bool state is stored as it is.
      for (const spec of specs) {
        if (spec.dtype === 'float32') expect(spec.quantization?.dtype, spec.name).toBe(quantize);
        else expect(spec.quantization, spec.name).toBeUndefined();
      }
      const floatBytes = [...model.params.values()].reduce((sum, v) => sum + 4 * v.size, 0);
      const stateBytes = 4 + 4; // int32[1] steps, bool[4] mask
      const perValue = quantize === 'uint8' ? 1 : 2;
      expect(tf.io.CompositeArrayBuffer.join(artifacts.weightData!).byteLength).toBe(
        (floatBytes / 4) * perValue + stateBytes,
      );

      // Through an IO handler and through a reader of model.json + shard: the same weights.
      const loaded = await loadModel(runtime, tf.io.fromMemory(artifacts));
      const { json, shard } = modelFiles(artifacts);
      const reader = new MemoryReader('memory://q/model.json', JSON.stringify(json), {
        'group1-shard1of1.bin': shard,
      });
      const viaReader = await loadModel(runtime, reader);
      expect(await bytesOf(viaReader)).toEqual(await bytesOf(loaded));

      // Dequantized exactly as tfjs itself decodes the same artifacts.
      const reference = tf.io.decodeWeights(artifacts.weightData!, specs);
      for (const [name, variable] of [...loaded.params, ...loaded.state]) {
        expect(variable.dtype, name).toBe(reference[name]!.dtype);
        // Exact on cpu/wasm; GPU backends may flush denormals when they store the values.
        await expectClose(variable, reference[name]!, {
          tolerance: isGpuBackend(backend) ? 1e-6 : 0,
          label: name,
        });
      }
      tf.dispose(Object.values(reference));
      // int32 and bool state is bit-exact; float32 parameters are close.
      const [original, back] = [await bytesOf(model), await bytesOf(loaded)];
      expect(back.get('scale/steps')).toEqual(original.get('scale/steps'));
      expect(back.get('scale/mask')).toEqual(original.get('scale/mask'));
      for (const [name, variable] of model.params) {
        const values = await variable.data();
        const loose = quantize === 'uint8' ? 0.02 : quantize === 'uint16' ? 1e-4 : 2e-3;
        await expectClose(loaded.params.get(name)!, values, { tolerance: loose, label: name });
      }

      const x = tf.tensor2d([
        [0.5, -1, 2],
        [1, 0.25, -0.75],
      ]);
      const [a, b] = [await model.predict(x), await loaded.predict(x)];
      await expectClose(b, a, { tolerance: quantize === 'uint8' ? 0.1 : 1e-2 });
      tf.dispose([x, a, b]);
      for (const m of [model, loaded, viaReader]) m.dispose();
    });
  }

  it('refuses an unknown quantize option and weights it cannot store', async () => {
    const model = testModel(runtime, 2);
    const sink = tf.io.withSaveHandler(async () => ({
      modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' },
    }));
    await expectDynnError(
      saveModel(model, sink, { quantize: 'int4' as QuantizationDType }),
      'INVALID_OPTION',
      'quantize is "int4"',
      'uint8, uint16, float16',
    );
    tf.tidy(() => model.params.get('out/bias')!.assign(tf.tensor1d([1, 1e6])));
    await expectDynnError(
      saveModel(model, sink, { quantize: 'float16' }),
      'INVALID_OPTION',
      "'out/bias'",
      'float16 range',
    );
    // uint8 stores any finite range.
    await saveModel(model, sink, { quantize: 'uint8' });
    model.dispose();
  });
});
