import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { seededUniform } from './random-tensors.js';

function call(layer: tfl.layers.Layer, ...inputs: tfl.SymbolicTensor[]): tfl.SymbolicTensor {
  return layer.apply(inputs.length === 1 ? inputs[0]! : inputs) as tfl.SymbolicTensor;
}

/** Conv (or depthwise conv), batch norm and, unless `linear`, ReLU6: MobileNetV2's unit. */
function convBn(
  x: tfl.SymbolicTensor,
  name: string,
  conv: tfl.layers.Layer,
  linear = false,
): tfl.SymbolicTensor {
  const normed = call(tfl.layers.batchNormalization({ name: `${name}_bn` }), call(conv, x));
  return linear ? normed : call(tfl.layers.reLU({ maxValue: 6, name: `${name}_relu` }), normed);
}

/**
 * MobileNetV2's inverted residual block: 1x1 expansion (skipped for `expansion` 1), 3x3
 * depthwise, linear 1x1 projection, and a residual Add when the shape stays.
 */
function invertedResidual(
  x: tfl.SymbolicTensor,
  name: string,
  options: { expansion: number; filters: number; stride: number },
): tfl.SymbolicTensor {
  const channels = x.shape[3] as number;
  let h = x;
  if (options.expansion !== 1) {
    const expand = tfl.layers.conv2d({
      filters: channels * options.expansion,
      kernelSize: 1,
      useBias: false,
      name: `${name}_expand`,
    });
    h = convBn(h, `${name}_expand`, expand);
  }
  const depthwise = tfl.layers.depthwiseConv2d({
    kernelSize: 3,
    strides: options.stride,
    padding: 'same',
    useBias: false,
    name: `${name}_dw`,
  });
  h = convBn(h, `${name}_dw`, depthwise);
  const project = tfl.layers.conv2d({
    filters: options.filters,
    kernelSize: 1,
    useBias: false,
    name: `${name}_project`,
  });
  h = convBn(h, `${name}_project`, project, true);
  return options.stride === 1 && channels === options.filters
    ? call(tfl.layers.add({ name: `${name}_add` }), x, h)
    : h;
}

/** Options of {@link mobileNetV2Like}. */
export interface MobileNetV2LikeOptions {
  /** Input height and width (default 16). */
  size?: number;
  /** Output classes (default 5). */
  classes?: number;
  /** Seed of the weights (default 1): batch-norm scales and statistics are random too. */
  seed?: number;
}

/**
 * A small MobileNetV2-like Keras model built with tfjs-layers: a strided stem, inverted residual
 * blocks (1x1 expansion, 3x3 depthwise, linear 1x1 projection, residual Adds), a 1x1 head conv,
 * global average pooling and a dense classifier, with seeded random weights (batch-norm scales
 * in [1, 3], moving variances in [0.5, 1.5], everything else in [-0.5, 0.5]) so that every
 * channel matters. Returns what tfjs-layers' `model.save` writes (topology and weights, in
 * memory), for `importLayersModel`: no tfjs-layers type reaches the caller.
 */
export async function mobileNetV2Like(options: MobileNetV2LikeOptions = {}): Promise<tf.io.ModelArtifacts> {
  const size = options.size ?? 16;
  const image = tfl.input({ shape: [size, size, 3], name: 'image' });
  const stemConv = tfl.layers.conv2d({
    filters: 8,
    kernelSize: 3,
    strides: 2,
    padding: 'same',
    useBias: false,
    name: 'stem',
  });
  let x = convBn(image, 'stem', stemConv);
  x = invertedResidual(x, 'block1', { expansion: 1, filters: 8, stride: 1 });
  x = invertedResidual(x, 'block2', { expansion: 3, filters: 12, stride: 2 });
  x = invertedResidual(x, 'block3', { expansion: 3, filters: 12, stride: 1 });
  x = convBn(x, 'head', tfl.layers.conv2d({ filters: 32, kernelSize: 1, useBias: false, name: 'head' }));
  const pooled = call(tfl.layers.globalAveragePooling2d({ name: 'pool' }), x);
  const logits = call(tfl.layers.dense({ units: options.classes ?? 5, name: 'logits' }), pooled);
  const model = tfl.model({ name: 'mobilenet_v2_like', inputs: image, outputs: logits });
  const seed = options.seed ?? 1;
  const values = model.weights.map((weight, i) => {
    const name = weight.originalName;
    const range = name.endsWith('/gamma')
      ? { min: 1, max: 3 }
      : name.endsWith('/moving_variance')
        ? { min: 0.5, max: 1.5 }
        : { min: -0.5, max: 0.5 };
    return seededUniform(weight.shape as number[], { seed: seed + i, ...range });
  });
  model.setWeights(values);
  tf.dispose(values);
  try {
    return await layersModelArtifacts(model);
  } finally {
    model.dispose();
  }
}

/** The artifacts of a tfjs-layers model as `model.save` hands them to an IO handler (in memory). */
async function layersModelArtifacts(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return saved!;
}
