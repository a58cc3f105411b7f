import { DynnError } from '../errors.js';
import type { Attrs, ValueInfo } from '../ir.js';
import type { ActivationName } from '../ops/basic/activation.js';
import { isObject, type KerasLayer, modelFileError } from './keras-json.js';

/** The dynn node one Keras layer becomes: its op and attributes. */
export interface LayerNode {
  op: string;
  attrs: Attrs;
}

/** Turns one Keras layer (with the value infos of its inputs) into a dynn node. */
export type LayerConverter = (layer: KerasLayer, inputs: readonly ValueInfo[]) => LayerNode;

/** Keras activation names (Keras 2/3 snake_case and tfjs-layers camelCase) and the dynn activation each is. */
const KERAS_ACTIVATIONS: Record<string, ActivationName> = {
  linear: 'linear',
  relu: 'relu',
  relu6: 'relu6',
  elu: 'elu',
  gelu: 'gelu',
  swish: 'swish',
  silu: 'swish',
  sigmoid: 'sigmoid',
  tanh: 'tanh',
  softmax: 'softmax',
  // Keras 3's leaky_relu activation has negative slope 0.2, the dynn default.
  leaky_relu: 'leakyRelu',
};

/** An error for a layer dynn has no equivalent for (a class, or a setting of a supported class). */
export function unsupported(layer: KerasLayer, why: string): DynnError {
  return new DynnError('UNSUPPORTED_LAYER', `Layer '${layer.name}' (${layer.className}) ${why}`, {
    node: layer.name,
  });
}

function malformed(layer: KerasLayer, key: string, expected: string): DynnError {
  return modelFileError(
    `Layer '${layer.name}' (${layer.className}) has ${key} = ${JSON.stringify(layer.config[key])}; expected ${expected}.`,
    layer.name,
  );
}

function numberOf(layer: KerasLayer, key: string, fallback?: number): number {
  const value = layer.config[key];
  if (typeof value === 'number') return value;
  if ((value === undefined || value === null) && fallback !== undefined) return fallback;
  throw malformed(layer, key, 'a number');
}

function boolOf(layer: KerasLayer, key: string, fallback: boolean): boolean {
  const value = layer.config[key];
  if (typeof value === 'boolean') return value;
  if (value === undefined || value === null) return fallback;
  throw malformed(layer, key, 'true or false');
}

/** A 2D size: Keras accepts `n` (both axes) or `[a, b]`. */
function pairOf(layer: KerasLayer, key: string, fallback?: [number, number]): [number, number] {
  const value = layer.config[key];
  if (typeof value === 'number') return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number')) {
    return [value[0] as number, value[1] as number];
  }
  if ((value === undefined || value === null) && fallback !== undefined) return fallback;
  throw malformed(layer, key, 'a number or two numbers');
}

/** One axis: Keras stores `-1`, and after building `[3]`. */
function axisOf(layer: KerasLayer, key: string, fallback: number): number {
  const value = layer.config[key];
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'number') return value[0];
  if (Array.isArray(value) && value.length > 1) {
    throw unsupported(
      layer,
      `normalises over several axes (${key} = ${JSON.stringify(value)}); dynn supports one.`,
    );
  }
  return numberOf(layer, key, fallback);
}

function axesOf(layer: KerasLayer, key: string, fallback: number[]): number[] {
  const value = layer.config[key];
  if (typeof value === 'number') return [value];
  if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'number')) {
    return value as number[];
  }
  if (value === undefined || value === null) return fallback;
  throw malformed(layer, key, 'an axis or a list of axes');
}

function paddingOf(layer: KerasLayer): 'same' | 'valid' {
  const value = layer.config.padding ?? 'valid';
  if (value === 'same' || value === 'valid') return value;
  throw unsupported(layer, `uses padding ${JSON.stringify(value)}; dynn supports 'same' and 'valid'.`);
}

/** The dynn activation of a Keras activation name. */
function activationNamed(layer: KerasLayer, value: unknown): ActivationName {
  if (value === undefined || value === null) return 'linear';
  const name = typeof value === 'string' ? value : isObject(value) ? value.class_name : undefined;
  if (typeof name === 'string') {
    const known = KERAS_ACTIVATIONS[name];
    if (known !== undefined) return known;
  }
  throw unsupported(
    layer,
    `uses activation ${JSON.stringify(name ?? value)}, which dynn cannot import. ` +
      `Supported activations: ${Object.keys(KERAS_ACTIVATIONS).join(', ')}.`,
  );
}

/** The fused activation of a layer (`activation` of Dense, Conv2D...). */
function activationOf(layer: KerasLayer): ActivationName {
  return activationNamed(layer, layer.config.activation);
}

function convWindow(layer: KerasLayer): Attrs {
  return {
    kernelSize: pairOf(layer, 'kernel_size'),
    strides: pairOf(layer, 'strides', [1, 1]),
    padding: paddingOf(layer),
    dilations: pairOf(layer, 'dilation_rate', [1, 1]),
    useBias: boolOf(layer, 'use_bias', true),
    activation: activationOf(layer),
  };
}

function pooling(op: string): LayerConverter {
  return (layer) => {
    const poolSize = pairOf(layer, 'pool_size', [2, 2]);
    return {
      op,
      attrs: { poolSize, strides: pairOf(layer, 'strides', poolSize), padding: paddingOf(layer) },
    };
  };
}

function globalPooling(op: string): LayerConverter {
  return (layer) => ({ op, attrs: { keepDims: boolOf(layer, 'keepdims', false) } });
}

/** ZeroPadding2D's padding: `n`, `[rows, cols]` (symmetric) or `[[top, bottom], [left, right]]`. */
function zeroPaddingOf(layer: KerasLayer): [number, number, number, number] {
  const value = layer.config.padding ?? 1;
  if (typeof value === 'number') return [value, value, value, value];
  if (Array.isArray(value) && value.length === 2) {
    const [rows, cols] = value;
    if (typeof rows === 'number' && typeof cols === 'number') return [rows, rows, cols, cols];
    const isPair = (v: unknown): v is [number, number] =>
      Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number');
    if (isPair(rows) && isPair(cols)) return [rows[0], rows[1], cols[0], cols[1]];
  }
  throw malformed(layer, 'padding', 'n, [rows, cols] or [[top, bottom], [left, right]]');
}

function reluOf(layer: KerasLayer): LayerNode {
  const maxValue = layer.config.max_value ?? null;
  const slope = numberOf(layer, 'negative_slope', 0);
  const threshold = numberOf(layer, 'threshold', 0);
  const activation = (fn: ActivationName, alpha: number | null = null): LayerNode => ({
    op: 'core.Activation',
    attrs: { fn, alpha },
  });
  if (threshold === 0 && slope === 0 && maxValue === null) return activation('relu');
  if (threshold === 0 && slope === 0 && maxValue === 6) return activation('relu6');
  if (threshold === 0 && maxValue === null) return activation('leakyRelu', slope);
  throw unsupported(
    layer,
    `has max_value ${JSON.stringify(maxValue)}, negative_slope ${slope} and threshold ${threshold}; dynn ` +
      'imports ReLU as relu, relu6 (max_value 6) or leaky relu (negative_slope), with threshold 0.',
  );
}

/** Keras' noise_shape (batch and other free axes `null`) as core.Dropout's (`-1`). */
function noiseShapeOf(layer: KerasLayer): number[] | null {
  const value = layer.config.noise_shape;
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value)) throw malformed(layer, 'noise_shape', 'a list of sizes');
  return value.map((d) => (typeof d === 'number' ? d : -1));
}

/**
 * Converters by Keras class name. Each reads the layer's snake_case config and returns the core
 * op with the attributes the agreed op contract names; parameters keep their Keras names.
 */
export const LAYER_CONVERTERS: Readonly<Record<string, LayerConverter>> = {
  Dense: (layer) => ({
    op: 'core.Dense',
    attrs: {
      units: numberOf(layer, 'units'),
      useBias: boolOf(layer, 'use_bias', true),
      activation: activationOf(layer),
    },
  }),
  Conv2D: (layer) => {
    const groups = numberOf(layer, 'groups', 1);
    if (groups !== 1) {
      throw unsupported(layer, `is a grouped convolution (groups = ${groups}); dynn supports groups = 1.`);
    }
    return { op: 'core.Conv2D', attrs: { filters: numberOf(layer, 'filters'), ...convWindow(layer) } };
  },
  DepthwiseConv2D: (layer) => ({
    op: 'core.DepthwiseConv2D',
    attrs: { ...convWindow(layer), depthMultiplier: numberOf(layer, 'depth_multiplier', 1) },
  }),
  SeparableConv2D: (layer) => ({
    op: 'core.SeparableConv2D',
    attrs: {
      filters: numberOf(layer, 'filters'),
      ...convWindow(layer),
      depthMultiplier: numberOf(layer, 'depth_multiplier', 1),
    },
  }),
  BatchNormalization: (layer) => {
    if (layer.config.renorm === true) {
      throw unsupported(layer, 'uses batch renormalisation, which dynn does not support.');
    }
    if (typeof layer.config.virtual_batch_size === 'number') {
      throw unsupported(layer, 'uses a virtual batch size, which dynn does not support.');
    }
    return {
      op: 'core.BatchNorm',
      attrs: {
        axis: axisOf(layer, 'axis', -1),
        momentum: numberOf(layer, 'momentum', 0.99),
        epsilon: numberOf(layer, 'epsilon', 1e-3),
        center: boolOf(layer, 'center', true),
        scale: boolOf(layer, 'scale', true),
      },
    };
  },
  LayerNormalization: (layer) => {
    if (layer.config.rms_scaling === true) {
      throw unsupported(layer, 'uses RMS scaling, which dynn does not support.');
    }
    return {
      op: 'core.LayerNorm',
      attrs: {
        axis: axesOf(layer, 'axis', [-1]),
        epsilon: numberOf(layer, 'epsilon', 1e-3),
        center: boolOf(layer, 'center', true),
        scale: boolOf(layer, 'scale', true),
      },
    };
  },
  Activation: (layer) => ({ op: 'core.Activation', attrs: { fn: activationOf(layer) } }),
  ReLU: reluOf,
  LeakyReLU: (layer) => ({
    op: 'core.Activation',
    // tfjs-layers and Keras 2 call the slope alpha, Keras 3 negative_slope; both default to 0.3.
    attrs: { fn: 'leakyRelu', alpha: numberOf(layer, 'alpha', numberOf(layer, 'negative_slope', 0.3)) },
  }),
  ELU: (layer) => ({ op: 'core.Activation', attrs: { fn: 'elu', alpha: numberOf(layer, 'alpha', 1) } }),
  Softmax: (layer) => ({ op: 'core.Activation', attrs: { fn: 'softmax', axis: axisOf(layer, 'axis', -1) } }),
  ZeroPadding2D: (layer) => ({ op: 'core.ZeroPadding2D', attrs: { padding: zeroPaddingOf(layer) } }),
  MaxPooling2D: pooling('core.MaxPool2D'),
  AveragePooling2D: pooling('core.AvgPool2D'),
  GlobalAveragePooling2D: globalPooling('core.GlobalAvgPool2D'),
  GlobalMaxPooling2D: globalPooling('core.GlobalMaxPool2D'),
  Add: () => ({ op: 'core.Add', attrs: {} }),
  Multiply: () => ({ op: 'core.Multiply', attrs: {} }),
  Concatenate: (layer) => ({ op: 'core.Concat', attrs: { axis: numberOf(layer, 'axis', -1) } }),
  Flatten: () => ({ op: 'core.Flatten', attrs: {} }),
  Reshape: (layer) => {
    const target = layer.config.target_shape;
    if (!Array.isArray(target) || !target.every((d) => typeof d === 'number')) {
      throw malformed(layer, 'target_shape', 'a list of sizes');
    }
    return { op: 'core.Reshape', attrs: { shape: target as number[] } };
  },
  Dropout: (layer) => ({
    op: 'core.Dropout',
    attrs: { rate: numberOf(layer, 'rate'), noiseShape: noiseShapeOf(layer) },
  }),
  // mask_zero is not carried over: none of the supported layers reads a mask.
  Embedding: (layer) => ({
    op: 'core.Embedding',
    attrs: { inputDim: numberOf(layer, 'input_dim'), outputDim: numberOf(layer, 'output_dim') },
  }),
  Identity: () => ({ op: 'core.Identity', attrs: {} }),
};

/** Other names Keras and tfjs-layers accept for the same classes. */
const ALIASES: Record<string, string> = {
  Convolution2D: 'Conv2D',
  SeparableConvolution2D: 'SeparableConv2D',
  MaxPool2D: 'MaxPooling2D',
  AvgPool2D: 'AveragePooling2D',
  GlobalAvgPool2D: 'GlobalAveragePooling2D',
  GlobalMaxPool2D: 'GlobalMaxPooling2D',
};

/** The converter of a layer class (aliases included), or undefined when dynn cannot import it. */
export function converterFor(className: string): LayerConverter | undefined {
  return LAYER_CONVERTERS[ALIASES[className] ?? className];
}
