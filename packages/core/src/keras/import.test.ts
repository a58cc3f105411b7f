import {
  describeEachBackend,
  expectClose,
  expectNoLeaks,
  guardLeaks,
  seededInts,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect, it } from 'vitest';
import { isDynnError } from '../errors.js';
import { createRuntime } from '../runtime.js';
import { importLayersModel } from './import.js';

const runtime = createRuntime();

/** Saves a tfjs-layers model to memory, as `model.save` hands it to any IO handler. */
async function artifactsOf(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
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
 * Gives every weight seeded values: batch norm scales in [1, 3] and moving variances in
 * [0.5, 1.5], everything else in [-0.5, 0.5], so statistics and biases all change the outputs and
 * activations reach relu6's cap.
 */
function randomizeWeights(model: tfl.LayersModel, seed: number): void {
  const range = (name: string) =>
    name.endsWith('/gamma')
      ? { min: 1, max: 3 }
      : name.endsWith('/moving_variance')
        ? { min: 0.5, max: 1.5 }
        : { min: -0.5, max: 0.5 };
  const values = model.weights.map((weight, i) =>
    seededUniform(weight.shape as number[], { seed: seed + i, ...range(weight.originalName) }),
  );
  model.setWeights(values);
  tf.dispose(values);
}

/** A MobileNet-like Sequential stack: padding, strided conv, BN + relu6, depthwise, 1x1 conv, pools, head. */
function mobileNetLike(): tfl.Sequential {
  return tfl.sequential({
    name: 'mobilenet_like',
    layers: [
      tfl.layers.zeroPadding2d({
        inputShape: [12, 12, 3],
        padding: [
          [1, 0],
          [0, 1],
        ],
        name: 'pad',
      }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, useBias: false, name: 'conv1' }),
      tfl.layers.batchNormalization({ name: 'conv1_bn' }),
      tfl.layers.reLU({ maxValue: 6, name: 'conv1_relu' }),
      tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, name: 'dw1' }),
      tfl.layers.batchNormalization({ epsilon: 1e-2, name: 'dw1_bn' }),
      tfl.layers.activation({ activation: 'relu6', name: 'dw1_relu' }),
      tfl.layers.conv2d({ filters: 6, kernelSize: 1, activation: 'elu', name: 'pw1' }),
      tfl.layers.maxPooling2d({ poolSize: 2, name: 'max_pool' }),
      tfl.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same', name: 'avg_pool' }),
      tfl.layers.flatten({ name: 'flatten' }),
      tfl.layers.dropout({ rate: 0.3, name: 'dropout' }),
      tfl.layers.dense({ units: 5, activation: 'softmax', name: 'predictions' }),
    ],
  });
}

/** Applies a tfjs-layers layer to symbolic inputs (one, or a list for merge layers). */
function call(
  layer: { apply(inputs: tfl.SymbolicTensor | tfl.SymbolicTensor[]): unknown },
  ...inputs: tfl.SymbolicTensor[]
): tfl.SymbolicTensor {
  return layer.apply(inputs.length === 1 ? inputs[0]! : inputs) as tfl.SymbolicTensor;
}

/** A functional model with two inputs, a residual Add, Multiply, Concatenate and two outputs. */
function residualTwoInputs(): tfl.LayersModel {
  const image = tfl.input({ shape: [8, 8, 3], name: 'image' });
  const hint = tfl.input({ shape: [8, 8, 2], name: 'hint' });
  const stem = call(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'stem' }), image);
  const stemAct = call(tfl.layers.leakyReLU({ alpha: 0.1, name: 'stem_act' }), stem);
  const branch = call(
    tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', dilationRate: 2, name: 'branch' }),
    stemAct,
  );
  const branchBn = call(tfl.layers.batchNormalization({ name: 'branch_bn' }), branch);
  const residual = call(tfl.layers.add({ name: 'residual' }), stemAct, branchBn);
  const gate = call(
    tfl.layers.conv2d({ filters: 4, kernelSize: 1, activation: 'sigmoid', name: 'gate' }),
    hint,
  );
  const gated = call(tfl.layers.multiply({ name: 'gated' }), residual, gate);
  const merged = call(tfl.layers.concatenate({ name: 'merged' }), gated, hint);
  const elu = call(tfl.layers.elu({ name: 'merged_elu' }), merged);
  const pooled = call(tfl.layers.globalAveragePooling2d({ name: 'pooled' }), elu);
  const logits = call(tfl.layers.dense({ units: 3, name: 'logits' }), pooled);
  const probabilities = call(tfl.layers.softmax({ name: 'probabilities' }), logits);
  const peak = call(tfl.layers.globalMaxPooling2d({ name: 'peak' }), residual);
  return tfl.model({ name: 'residual_two_inputs', inputs: [image, hint], outputs: [probabilities, peak] });
}

/** A model with an image branch (SeparableConv2D, multi-axis LayerNormalization) and a token branch (Embedding). */
function separableAndText(): tfl.LayersModel {
  const image = tfl.input({ shape: [8, 8, 3], name: 'image' });
  const tokens = tfl.input({ shape: [6], name: 'tokens' });
  // tfjs-layers 4.22 drops depthMultiplier from a saved SeparableConv2D config (its own
  // loadLayersModel then fails too), so only the default multiplier round-trips.
  const sep = call(
    tfl.layers.separableConv2d({
      filters: 5,
      kernelSize: 3,
      strides: 2,
      padding: 'same',
      activation: 'relu',
      name: 'sep',
    }),
    image,
  );
  const sepNorm = call(tfl.layers.layerNormalization({ axis: [1, 2, 3], name: 'sep_norm' }), sep);
  const imageFeatures = call(tfl.layers.globalAveragePooling2d({ name: 'image_pool' }), sepNorm);
  const embedded = call(tfl.layers.embedding({ inputDim: 10, outputDim: 4, name: 'embed' }), tokens);
  const textNorm = call(tfl.layers.layerNormalization({ epsilon: 1e-5, name: 'text_norm' }), embedded);
  const textFeatures = call(tfl.layers.reshape({ targetShape: [24], name: 'text_flat' }), textNorm);
  const joined = call(tfl.layers.concatenate({ name: 'joined' }), imageFeatures, textFeatures);
  const output = call(tfl.layers.dense({ units: 2, activation: 'gelu', name: 'head' }), joined);
  return tfl.model({ name: 'separable_and_text', inputs: [image, tokens], outputs: output });
}

describeEachBackend('importLayersModel', () => {
  guardLeaks();

  it('matches tfjs-layers predict on a Sequential MobileNet-like stack', async () => {
    const reference = mobileNetLike();
    randomizeWeights(reference, 100);
    const model = await importLayersModel(runtime, await artifactsOf(reference));
    expect(model.graph.inputs).toEqual([
      { name: 'pad_input', dtype: 'float32', shape: ['batch', 12, 12, 3] },
    ]);
    expect(model.graph.outputs.map((o) => o.name)).toEqual(['predictions']);
    expect(model.graph.nodes.map((n) => `${n.name}:${n.op}`)).toEqual([
      'pad:core.ZeroPadding2D',
      'conv1:core.Conv2D',
      'conv1_bn:core.BatchNorm',
      'conv1_relu:core.Activation',
      'dw1:core.DepthwiseConv2D',
      'dw1_bn:core.BatchNorm',
      'dw1_relu:core.Activation',
      'pw1:core.Conv2D',
      'max_pool:core.MaxPool2D',
      'avg_pool:core.AvgPool2D',
      'flatten:core.Flatten',
      'dropout:core.Dropout',
      'predictions:core.Dense',
    ]);
    // Wide enough that the first batch norm's outputs pass relu6's cap.
    const x = seededUniform([2, 12, 12, 3], { seed: 7, min: -3, max: 3 });
    const expected = reference.predict(x) as tf.Tensor;
    const actual = await model.predict(x);
    await expectClose(actual, expected, { label: 'MobileNet-like' });
    tf.dispose([x, expected, actual]);
    model.dispose();
    reference.dispose();
  });

  it('matches tfjs-layers predict on a two-input residual model with two outputs', async () => {
    const reference = residualTwoInputs();
    randomizeWeights(reference, 200);
    const model = await importLayersModel(runtime, await artifactsOf(reference));
    expect(model.graph.inputs.map((i) => i.name)).toEqual(['image', 'hint']);
    expect(model.graph.outputs.map((o) => o.name)).toEqual(['probabilities', 'peak']);
    const image = seededUniform([3, 8, 8, 3], { seed: 8 });
    const hint = seededUniform([3, 8, 8, 2], { seed: 9 });
    const [probabilities, peak] = reference.predict([image, hint]) as tf.Tensor[];
    const { outputs } = await model.run({ image, hint });
    await expectClose(outputs.probabilities!, probabilities!, { label: 'probabilities' });
    await expectClose(outputs.peak!, peak!, { label: 'peak' });
    tf.dispose([image, hint, probabilities!, peak!, ...Object.values(outputs)]);
    model.dispose();
    reference.dispose();
  });

  it('matches tfjs-layers predict with SeparableConv2D, LayerNormalization and Embedding', async () => {
    const reference = separableAndText();
    randomizeWeights(reference, 300);
    const model = await importLayersModel(runtime, await artifactsOf(reference));
    const image = seededUniform([2, 8, 8, 3], { seed: 10 });
    // Keras feeds token ids as float32; the Embedding casts them.
    const tokens = tf.tidy(() => tf.cast(seededInts([2, 6], 10, { seed: 11 }), 'float32'));
    const expected = reference.predict([image, tokens]) as tf.Tensor;
    const { outputs } = await model.run({ image, tokens });
    await expectClose(outputs.head!, expected, { label: 'separable and text' });
    tf.dispose([image, tokens, expected, ...Object.values(outputs)]);
    model.dispose();
    reference.dispose();
  });

  it('reads the Keras converter layout: model_config wrapper, HDF5 weight names, optimizer weights', async () => {
    const reference = mobileNetLike();
    randomizeWeights(reference, 400);
    const saved = await artifactsOf(reference);
    const kerasSpecs = saved.weightSpecs!.map((spec) => {
      const [layer, weight] = spec.name.split('/');
      return { ...spec, name: `${layer}/${layer}/${weight}:0` };
    });
    // One extra float in an optimizer group, which the import must skip.
    const data = new Float32Array(saved.weightData as ArrayBuffer).length;
    const weightData = new Float32Array(data + 1);
    weightData.set(new Float32Array(saved.weightData as ArrayBuffer));
    const artifacts: tf.io.ModelArtifacts = {
      modelTopology: {
        keras_version: '2.15.0',
        backend: 'tensorflow',
        model_config: saved.modelTopology,
      },
      weightSpecs: [...kerasSpecs, { name: 'iter', shape: [], dtype: 'float32', group: 'optimizer' }],
      weightData: weightData.buffer,
    };
    const model = await importLayersModel(runtime, tf.io.fromMemory(artifacts));
    const x = seededUniform([1, 12, 12, 3], { seed: 12 });
    const expected = reference.predict(x) as tf.Tensor;
    const actual = await model.predict(x);
    await expectClose(actual, expected, { label: 'Keras layout' });
    tf.dispose([x, expected, actual]);
    model.dispose();
    reference.dispose();
  });

  it('leaks no tensor when importing, nor when the weights do not fit', async () => {
    const reference = residualTwoInputs();
    const artifacts = await artifactsOf(reference);
    reference.dispose();
    await expectNoLeaks(async () => {
      const model = await importLayersModel(runtime, artifacts);
      model.dispose();
    }, 'importLayersModel');
    const missing = {
      ...artifacts,
      weightSpecs: artifacts.weightSpecs!.filter((spec) => spec.name !== 'logits/bias'),
    };
    const error = await expectNoLeaks(
      () =>
        importLayersModel(runtime, missing).then(
          () => undefined,
          (e: unknown) => e,
        ),
      'failed import',
    );
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect((error as Error).message).toMatch(/logits\/bias/);
  });

  it('refuses a tfjs-layers LSTM, naming the class and the layer', async () => {
    const reference = tfl.sequential({
      // tfjs-layers' default orthogonal initializer needs tfjs' chained ops, which these tests do not load.
      layers: [
        tfl.layers.lstm({
          units: 2,
          inputShape: [3, 4],
          recurrentInitializer: 'glorotUniform',
          name: 'recurrent',
        }),
      ],
    });
    const artifacts = await artifactsOf(reference);
    reference.dispose();
    const error = await importLayersModel(runtime, artifacts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDynnError(error, 'UNSUPPORTED_LAYER')).toBe(true);
    expect((error as Error).message).toMatch(
      /Layer 'recurrent' \(LSTM\) cannot be imported.*Supported layer classes/,
    );
  });

  it('refuses a channels_first tfjs-layers convolution', async () => {
    const reference = tfl.sequential({
      layers: [
        tfl.layers.conv2d({
          filters: 2,
          kernelSize: 3,
          dataFormat: 'channelsFirst',
          inputShape: [3, 6, 6],
          name: 'nchw',
        }),
      ],
    });
    const artifacts = await artifactsOf(reference);
    reference.dispose();
    const error = await importLayersModel(runtime, artifacts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDynnError(error, 'UNSUPPORTED_LAYER')).toBe(true);
    expect((error as Error).message).toMatch(
      /'nchw' \(Conv2D\) uses data_format 'channels_first'.*only 'channels_last'/,
    );
  });
});
