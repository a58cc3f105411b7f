/**
 * Fixtures of the quantized-import tests: small tfjs-layers models, their artifacts as
 * `model.save` hands them to an IO handler, and those artifacts quantized the way the
 * tensorflowjs converter writes published models.
 */
import { seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { encodeQuantizedWeights, type NamedValues, type QuantizationDType } from '../io/quantize.js';

/** A Sequential dense classifier: 6 -> 12 (relu) -> 8 (tanh) -> 4 (softmax). */
export function denseNet(): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [6], units: 12, activation: 'relu', name: 'hidden1' }),
      tfl.layers.dense({ units: 8, activation: 'tanh', name: 'hidden2' }),
      tfl.layers.dense({ units: 4, activation: 'softmax', name: 'classes' }),
    ],
  });
}

/** A small conv net: conv (relu) -> max pool -> conv -> flatten -> dense. */
export function convNet(): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.conv2d({
        inputShape: [8, 8, 2],
        filters: 4,
        kernelSize: 3,
        activation: 'relu',
        name: 'conv1',
      }),
      tfl.layers.maxPooling2d({ poolSize: 2, name: 'pool' }),
      tfl.layers.conv2d({ filters: 3, kernelSize: 2, padding: 'same', name: 'conv2' }),
      tfl.layers.flatten({ name: 'flat' }),
      tfl.layers.dense({ units: 3, name: 'logits' }),
    ],
  });
}

/** Gives every weight (biases included, which start at zero) seeded values in [-0.5, 0.5). */
export function randomizeWeights(model: tfl.LayersModel, seed: number): void {
  const values = model.weights.map((w, i) =>
    seededUniform(w.shape as number[], { seed: seed + i, min: -0.5, max: 0.5 }),
  );
  model.setWeights(values);
  tf.dispose(values);
}

/** The artifacts `model.save` hands to an IO handler. */
export async function layersArtifacts(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return saved!;
}

/**
 * `artifacts` with their float32 weights quantized as the tensorflowjs converter does: uint8 /
 * uint16 affine with a nudged min and a scale, or float16; each entry gets
 * `quantization: { dtype, min, scale, original_dtype: 'float32' }` (float16: no min and scale).
 */
export function quantizeLayersArtifacts(
  artifacts: tf.io.ModelArtifacts,
  dtype: QuantizationDType,
): tf.io.ModelArtifacts {
  const data = tf.io.CompositeArrayBuffer.join(artifacts.weightData!);
  let offset = 0;
  const tensors: NamedValues[] = (artifacts.weightSpecs ?? []).map((spec) => {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const bytes = data.slice(offset, offset + 4 * size);
    offset += 4 * size;
    const values = spec.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes);
    return { name: spec.name, shape: spec.shape, dtype: spec.dtype, values };
  });
  const encoded = encodeQuantizedWeights(tensors, dtype);
  const weightSpecs = encoded.specs.map((spec, i) => {
    const withGroup =
      artifacts.weightSpecs![i]!.group === undefined
        ? spec
        : { ...spec, group: artifacts.weightSpecs![i]!.group };
    return spec.quantization === undefined
      ? withGroup
      : { ...withGroup, quantization: { ...spec.quantization, original_dtype: 'float32' } };
  });
  return { ...artifacts, weightSpecs: weightSpecs as tf.io.WeightsManifestEntry[], weightData: encoded.data };
}
