import { describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect, it } from 'vitest';
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

const NETS = [
  { name: 'a Sequential dense net', build: denseNet, input: [5, 6] },
  { name: 'a small conv net', build: convNet, input: [3, 8, 8, 2] },
] as const;

/** The error `promise` rejects with. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error as Error,
  );
}

describeEachBackend('importLayersModel with quantized weights', () => {
  guardLeaks();

  for (const net of NETS) {
    for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
      it(`matches tfjs-layers on ${net.name} with ${dtype} weights`, async () => {
        const float = net.build();
        randomizeWeights(float, 40);
        const quantized = quantizeLayersArtifacts(await layersArtifacts(float), dtype);
        const reference = await tfl.loadLayersModel(tf.io.fromMemory(quantized));
        const model = await importLayersModel(runtime, quantized);
        const x = seededUniform([...net.input], { seed: 8 });
        const expected = reference.predict(x) as tf.Tensor;
        const actual = await model.predict(x);
        await expectClose(actual, expected, { label: `${net.name} ${dtype}` });
        if (dtype === 'uint8') {
          // The weights really were quantized: the float model's outputs differ.
          const exact = float.predict(x) as tf.Tensor;
          const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(exact, actual))));
          expect((await moved.data())[0]).toBeGreaterThan(1e-6);
          tf.dispose([exact, moved]);
        }
        tf.dispose([x, expected, actual]);
        model.dispose();
        reference.dispose();
        float.dispose();
      });
    }
  }

  it('refuses hostile quantization fields and short weight data with a MODEL_FILE error', async () => {
    const float = denseNet();
    const good = quantizeLayersArtifacts(await layersArtifacts(float), 'uint8');
    float.dispose();
    const edited = (edit: (specs: Record<string, unknown>[]) => void): tf.io.ModelArtifacts => {
      const weightSpecs = JSON.parse(JSON.stringify(good.weightSpecs)) as Record<string, unknown>[];
      edit(weightSpecs);
      return { ...good, weightSpecs: weightSpecs as unknown as tf.io.WeightsManifestEntry[] };
    };
    const cases: [string, tf.io.ModelArtifacts, string][] = [
      [
        'bad dtype',
        edited((specs) => {
          (specs[0]!.quantization as Record<string, unknown>).dtype = 'int4';
        }),
        'weightSpecs[0].quantization.dtype is "int4"; quantized weights are stored as one of uint8, uint16, float16',
      ],
      [
        'NaN scale',
        edited((specs) => {
          (specs[1]!.quantization as Record<string, unknown>).scale = Number.NaN;
        }),
        'weightSpecs[1].quantization.scale must be a finite number',
      ],
      [
        'missing min',
        edited((specs) => {
          delete (specs[2]!.quantization as Record<string, unknown>).min;
        }),
        'weightSpecs[2].quantization.min must be a finite number',
      ],
      [
        'int32 weight',
        edited((specs) => {
          specs[0]!.dtype = 'int32';
        }),
        'weightSpecs[0].quantization is set on a weight of dtype "int32"',
      ],
      [
        'short data',
        { ...good, weightData: (good.weightData as ArrayBuffer).slice(0, -1) },
        `holds ${(good.weightData as ArrayBuffer).byteLength - 1} bytes of weight data, but its weight specs need ${(good.weightData as ArrayBuffer).byteLength}`,
      ],
    ];
    for (const [label, artifacts, message] of cases) {
      const before = tf.memory().numTensors;
      const error = await rejection(importLayersModel(runtime, artifacts));
      expect(isDynnError(error, 'MODEL_FILE'), `${label}: ${error.message}`).toBe(true);
      expect(error.message, label).toContain(message);
      expect(error.message, label).not.toMatch(/written by dynn/);
      expect(tf.memory().numTensors, label).toBe(before);
    }
  });
});
