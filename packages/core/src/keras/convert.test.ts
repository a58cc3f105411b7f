import { describe, expect, it } from 'vitest';
import { DynnError } from '../errors.js';
import type { Attrs } from '../ir.js';
import { createRuntime } from '../runtime.js';
import { convertLayersTopology } from './convert.js';

const runtime = createRuntime();

type Json = Record<string, unknown>;

function inputLayer(name: string, shape: (number | null)[], dtype = 'float32'): Json {
  return {
    class_name: 'InputLayer',
    name,
    config: { name, batch_input_shape: [null, ...shape], dtype },
    inbound_nodes: [],
  };
}

/** A functional-model layer called once on `inputs` (Keras 2 / tfjs-layers inbound format). */
function layer(className: string, name: string, config: Json, inputs: string[]): Json {
  return {
    class_name: className,
    name,
    config: { name, ...config },
    inbound_nodes: [inputs.map((input) => [input, 0, 0, {}])],
  };
}

function functional(layers: Json[], inputs: string[], outputs: string[]): Json {
  return {
    class_name: 'Functional',
    config: {
      name: 'model',
      layers,
      input_layers: inputs.map((name) => [name, 0, 0]),
      output_layers: outputs.map((name) => [name, 0, 0]),
    },
  };
}

function sequential(layers: Json[], name = 'sequential'): Json {
  return { class_name: 'Sequential', config: { name, layers } };
}

/** A Sequential of an image input and one layer: returns that layer's node. */
function singleLayerNode(className: string, config: Json, shape: number[] = [6, 6, 2]) {
  const { graph } = convertLayersTopology(
    runtime,
    sequential([
      inputLayer('x', shape),
      { class_name: className, config: { name: 'under_test', ...config } },
    ]),
  );
  return graph.nodes[0]!;
}

function conversionError(topology: unknown): DynnError {
  try {
    convertLayersTopology(runtime, topology);
  } catch (error) {
    if (error instanceof DynnError) return error;
    throw error;
  }
  throw new Error('the conversion succeeded');
}

describe('convertLayersTopology', () => {
  it('maps each Keras weight name to the dynn parameter or state of its node', () => {
    const { graph, weightNames } = convertLayersTopology(
      runtime,
      sequential([
        inputLayer('image', [8, 8, 3]),
        { class_name: 'DepthwiseConv2D', config: { name: 'dw', kernel_size: [3, 3], use_bias: false } },
        { class_name: 'BatchNormalization', config: { name: 'dw_bn', axis: [3], center: false } },
        { class_name: 'SeparableConv2D', config: { name: 'sep', filters: 4, kernel_size: 3 } },
      ]),
    );
    expect(Object.fromEntries(weightNames)).toEqual({
      'dw/depthwise_kernel': 'dw/depthwiseKernel',
      'dw_bn/gamma': 'dw_bn/gamma',
      'dw_bn/moving_mean': 'dw_bn/movingMean',
      'dw_bn/moving_variance': 'dw_bn/movingVariance',
      'sep/depthwise_kernel': 'sep/depthwiseKernel',
      'sep/pointwise_kernel': 'sep/pointwiseKernel',
      'sep/bias': 'sep/bias',
    });
    expect(graph.nodes[1]!.attrs).toMatchObject({ axis: 3, center: false, scale: true });
    expect(graph.outputs).toEqual([{ name: 'sep', dtype: 'float32', shape: ['batch', 4, 4, 4] }]);
  });

  it('reads the Keras converter wrapper and a Sequential whose first layer holds the input shape', () => {
    const { graph } = convertLayersTopology(runtime, {
      keras_version: '2.15.0',
      backend: 'tensorflow',
      model_config: sequential([
        {
          class_name: 'Dense',
          config: { name: 'hidden', units: 4, activation: 'swish', batch_input_shape: [null, 3] },
        },
        { class_name: 'Dense', config: { name: 'out', units: 2, activation: 'sigmoid', use_bias: false } },
      ]),
    });
    expect(graph.inputs).toEqual([{ name: 'hidden_input', dtype: 'float32', shape: ['batch', 3] }]);
    expect(graph.nodes.map((n) => n.attrs)).toEqual([
      { units: 4, useBias: true, activation: 'swish' },
      { units: 2, useBias: false, activation: 'sigmoid' },
    ]);
  });

  it('reads Keras 3 functional configs: batch_shape, {args, kwargs} inbound nodes, a lone input triple', () => {
    const kerasTensor = (layerName: string) => ({
      class_name: '__keras_tensor__',
      config: { shape: [null, 4], dtype: 'float32', keras_history: [layerName, 0, 0] },
    });
    const { graph } = convertLayersTopology(runtime, {
      class_name: 'Functional',
      config: {
        name: 'keras3',
        layers: [
          {
            class_name: 'InputLayer',
            name: 'input_layer',
            config: { name: 'input_layer', batch_shape: [null, 4], dtype: 'float32' },
            inbound_nodes: [],
          },
          {
            class_name: 'Dense',
            name: 'dense',
            config: { name: 'dense', units: 4, activation: 'silu' },
            inbound_nodes: [{ args: [kerasTensor('input_layer')], kwargs: {} }],
          },
          {
            class_name: 'Add',
            name: 'add',
            config: { name: 'add' },
            inbound_nodes: [{ args: [[kerasTensor('dense'), kerasTensor('input_layer')]], kwargs: {} }],
          },
          {
            class_name: 'LeakyReLU',
            name: 'leaky',
            config: { name: 'leaky', negative_slope: 0.25 },
            inbound_nodes: [{ args: [kerasTensor('add')], kwargs: { training: false } }],
          },
        ],
        input_layers: ['input_layer', 0, 0],
        output_layers: ['leaky', 0, 0],
      },
    });
    expect(graph.nodes.map((n) => [n.name, n.op, n.inputs])).toEqual([
      ['dense', 'core.Dense', ['input_layer']],
      ['add', 'core.Add', ['dense', 'input_layer']],
      ['leaky', 'core.Activation', ['add']],
    ]);
    expect(graph.nodes[0]!.attrs.activation).toBe('swish');
    expect(graph.nodes[2]!.attrs).toEqual({ fn: 'leakyRelu', alpha: 0.25 });
  });

  it('inlines a nested Sequential, names outputs after the output layers, and sanitises names', () => {
    const inner = sequential(
      [
        inputLayer('inner_in', [4]),
        { class_name: 'Dense', config: { name: 'inner_dense', units: 3 } },
        { class_name: 'Dropout', config: { name: 'inner_drop', rate: 0.5, noise_shape: [null, 1] } },
      ],
      'encoder',
    );
    const { graph, weightNames } = convertLayersTopology(
      runtime,
      functional(
        [
          inputLayer('features', [4]),
          { ...inner, name: 'encoder', inbound_nodes: [[['features', 0, 0, {}]]] },
          // Keras numbers the call of a nested model 1 when its own first node is skipped.
          {
            class_name: 'Dense',
            name: 'head/out',
            config: { name: 'head/out', units: 2 },
            inbound_nodes: [[['encoder', 1, 0, {}]]],
          },
        ],
        ['features'],
        ['encoder', 'head/out'],
      ),
    );
    expect(graph.nodes.map((n) => [n.name, n.inputs])).toEqual([
      ['inner_dense', ['features']],
      ['inner_drop', ['inner_dense']],
      ['head_out', ['encoder']],
    ]);
    expect(graph.nodes[1]!.attrs).toEqual({ rate: 0.5, noiseShape: [-1, 1] });
    // The nested model's output value takes the nested model's name.
    expect(graph.nodes[1]!.outputs).toEqual(['encoder']);
    expect(graph.outputs.map((o) => o.name)).toEqual(['encoder', 'head_out']);
    expect(weightNames.get('head/out/kernel')).toBe('head_out/kernel');
    expect(weightNames.get('inner_dense/bias')).toBe('inner_dense/bias');
  });

  it('converts each ZeroPadding2D padding form to [top, bottom, left, right]', () => {
    const padding = (value: unknown): Attrs => singleLayerNode('ZeroPadding2D', { padding: value }).attrs;
    expect(padding(2).padding).toEqual([2, 2, 2, 2]);
    expect(padding([1, 3]).padding).toEqual([1, 1, 3, 3]);
    expect(
      padding([
        [0, 1],
        [2, 3],
      ]).padding,
    ).toEqual([0, 1, 2, 3]);
    expect(() => padding('big')).toThrow(/padding/);
  });

  it('converts ReLU layers to relu, relu6 or leaky relu, and refuses a threshold', () => {
    const relu = (config: Json): Attrs => singleLayerNode('ReLU', config).attrs;
    expect(relu({ max_value: null })).toEqual({ fn: 'relu', alpha: null });
    expect(relu({ max_value: 6 })).toEqual({ fn: 'relu6', alpha: null });
    expect(relu({ negative_slope: 0.1, threshold: 0 })).toEqual({ fn: 'leakyRelu', alpha: 0.1 });
    const error = conversionError(
      sequential([
        inputLayer('x', [3]),
        { class_name: 'ReLU', config: { name: 'clipped', max_value: 2, threshold: 1 } },
      ]),
    );
    expect(error.code).toBe('UNSUPPORTED_LAYER');
    expect(error.message).toMatch(/'clipped' \(ReLU\).*threshold 1/);
  });

  it('converts pooling, global pooling, Softmax, Reshape and Concatenate settings', () => {
    expect(
      singleLayerNode('MaxPooling2D', { pool_size: [3, 3], strides: null, padding: 'same' }).attrs,
    ).toEqual({
      poolSize: [3, 3],
      strides: [3, 3],
      padding: 'same',
    });
    expect(singleLayerNode('AvgPool2D', { pool_size: 2, strides: [1, 1] }).op).toBe('core.AvgPool2D');
    expect(singleLayerNode('GlobalMaxPooling2D', { keepdims: true }).attrs).toEqual({ keepDims: true });
    expect(singleLayerNode('Softmax', { axis: 1 }).attrs).toEqual({ fn: 'softmax', axis: 1 });
    expect(singleLayerNode('Reshape', { target_shape: [-1, 2] }).attrs).toEqual({ shape: [-1, 2] });
  });

  it('refuses a layer class without a dynn equivalent, naming the class, the layer and the supported classes', () => {
    const error = conversionError(
      sequential([
        inputLayer('x', [4, 4, 4, 1]),
        { class_name: 'Conv3D', config: { name: 'volume', filters: 2 } },
      ]),
    );
    expect(error.code).toBe('UNSUPPORTED_LAYER');
    expect(error.context.node).toBe('volume');
    expect(error.message).toMatch(/'volume' \(Conv3D\)/);
    expect(error.message).toMatch(/Supported layer classes: InputLayer, Dense, Conv2D/);
  });

  it('refuses channels_first, unsupported activations, grouped convolutions and shared layers', () => {
    const channelsFirst = conversionError(
      sequential([
        inputLayer('x', [2, 6, 6]),
        {
          class_name: 'Conv2D',
          config: { name: 'nchw', filters: 2, kernel_size: 3, data_format: 'channels_first' },
        },
      ]),
    );
    expect(channelsFirst.code).toBe('UNSUPPORTED_LAYER');
    expect(channelsFirst.message).toMatch(/'nchw' \(Conv2D\).*only 'channels_last'/);

    const selu = conversionError(
      sequential([
        inputLayer('x', [3]),
        { class_name: 'Dense', config: { name: 'd', units: 2, activation: 'selu' } },
      ]),
    );
    expect(selu.code).toBe('UNSUPPORTED_LAYER');
    expect(selu.message).toMatch(/'d' \(Dense\) uses activation "selu"/);

    const grouped = conversionError(
      sequential([
        inputLayer('x', [6, 6, 4]),
        { class_name: 'Conv2D', config: { name: 'g', filters: 4, kernel_size: 1, groups: 2 } },
      ]),
    );
    expect(grouped.message).toMatch(/groups = 2/);

    const shared = conversionError(
      functional(
        [
          inputLayer('a', [3]),
          inputLayer('b', [3]),
          {
            class_name: 'Dense',
            name: 'twice',
            config: { name: 'twice', units: 3 },
            inbound_nodes: [[['a', 0, 0, {}]], [['b', 0, 0, {}]]],
          },
          layer('Add', 'sum', {}, ['twice', 'twice']),
        ],
        ['a', 'b'],
        ['sum'],
      ),
    );
    expect(shared.code).toBe('UNSUPPORTED_LAYER');
    expect(shared.message).toMatch(/'twice' \(Dense\) is called 2 times/);
  });

  it('names the layer when its shapes do not fit', () => {
    const error = conversionError(
      functional(
        [inputLayer('a', [3]), inputLayer('b', [4]), layer('Add', 'bad_sum', {}, ['a', 'b'])],
        ['a', 'b'],
        ['bad_sum'],
      ),
    );
    expect(error.message).toMatch(/Keras layer 'bad_sum' \(Add\)/);
    expect(error.context.node).toBe('bad_sum');
  });

  it('refuses what is not a layers model', () => {
    expect(conversionError({ node: [], library: {} }).code).toBe('MODEL_FILE');
    const noShape = conversionError(sequential([{ class_name: 'Dense', config: { name: 'd', units: 2 } }]));
    expect(noShape.code).toBe('MODEL_FILE');
    expect(noShape.message).toMatch(/'d' \(Dense\) gives no input shape/);
    const dangling = conversionError(
      functional([inputLayer('a', [3]), layer('Dense', 'd', { units: 2 }, ['ghost'])], ['a'], ['d']),
    );
    expect(dangling.message).toMatch(/'d' of model 'model' reads ghost/);
  });
});
