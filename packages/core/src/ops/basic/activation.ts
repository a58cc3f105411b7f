import * as tf from '@tensorflow/tfjs-core';
import { elementwiseChannels } from '../../channel-axes.js';
import { type AttrSpec, defineOp } from '../../op.js';
import { formatShape, normalizeAxis, product } from './shape-helpers.js';

/** Activation functions the core ops apply, by their Keras-style names. */
export const ACTIVATIONS = [
  'linear',
  'relu',
  'relu6',
  'leakyRelu',
  'elu',
  'gelu',
  'swish',
  'sigmoid',
  'tanh',
  'softmax',
] as const;

/** One of {@link ACTIVATIONS}. */
export type ActivationName = (typeof ACTIVATIONS)[number];

/** The attribute schema entry for a fused activation (`activation: 'relu'` on Dense, Conv2D...). */
export const activationAttr: AttrSpec = {
  kind: 'enum',
  values: ACTIVATIONS,
  default: 'linear',
  doc: 'activation applied to the output',
};

/**
 * Applies an activation. `alpha` is the negative slope of `leakyRelu` (default 0.2) and the
 * scale of `elu` (default 1), as in Keras. `gelu` is the exact (erf) form, as Keras' default;
 * `softmax` runs over `axis` (default the last).
 */
export function applyActivation(name: ActivationName, x: tf.Tensor, alpha?: number, axis = -1): tf.Tensor {
  switch (name) {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'leakyRelu':
      return tf.leakyRelu(x, alpha ?? 0.2);
    case 'elu':
      return alpha === undefined || alpha === 1 ? tf.elu(x) : scaledElu(x, alpha);
    case 'gelu':
      return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
    case 'swish':
      return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'tanh':
      return tf.tanh(x);
    case 'softmax':
      return softmaxOverAxis(x, normalizeAxis(axis, x.rank, 'softmax axis'));
  }
}

/**
 * ELU with a scale other than 1 (tf.elu has none), as `relu(x) + alpha * expm1(min(x, 0))`: no
 * comparison of `x`, whose op (Greater) has no gradient in tfjs, and no overflow in the unused
 * branch.
 */
function scaledElu(x: tf.Tensor, alpha: number): tf.Tensor {
  return tf.tidy(() => tf.add(tf.relu(x), tf.mul(alpha, tf.expm1(tf.minimum(x, 0)))));
}

/** tf.softmax only reduces the last axis: any other axis is moved there and back. */
function softmaxOverAxis(x: tf.Tensor, axis: number): tf.Tensor {
  if (axis === x.rank - 1) return tf.softmax(x);
  return tf.tidy(() => {
    const order = x.shape.map((_, i) => i);
    order[axis] = x.rank - 1;
    order[x.rank - 1] = axis;
    // Swapping two axes is its own inverse.
    return tf.transpose(tf.softmax(tf.transpose(x, order)), order);
  });
}

/** FLOPs of an activation per element (rough counts: a comparison or multiply is one). */
export function activationFlops(name: ActivationName): number {
  switch (name) {
    case 'linear':
      return 0;
    case 'relu':
    case 'relu6':
    case 'leakyRelu':
      return 1;
    case 'sigmoid':
    case 'tanh':
    case 'elu':
    case 'swish':
      return 4;
    case 'gelu':
    case 'softmax':
      return 5;
  }
}

/** Attributes of {@link activationOp}. */
export type ActivationAttrs = {
  fn: ActivationName;
  alpha: number | null;
  axis: number;
};

/**
 * `core.Activation`: applies one activation function elementwise (softmax: over `axis`).
 * Channels: elementwise, every non-batch axis tied from input to output; softmax mixes `axis`.
 */
export const activationOp = defineOp<ActivationAttrs>({
  type: 'core.Activation',
  version: 1,
  description: 'Applies an activation function (relu, gelu, softmax over an axis...) to its input.',
  attrs: {
    fn: { kind: 'enum', values: ACTIVATIONS, doc: 'the activation function' },
    alpha: {
      kind: 'float',
      default: null,
      doc: 'leakyRelu negative slope / elu scale; null: the Keras default (0.2 for leakyRelu, 1 for elu)',
    },
    axis: { kind: 'int', default: -1, doc: 'axis softmax normalises over' },
  },
  inputs: { min: 1 },
  inferShape(attrs, [x]) {
    if (x!.dtype !== 'float32') {
      throw new Error(`Activation needs a float32 input, got ${x!.dtype}${formatShape(x!.shape)}`);
    }
    if (attrs.fn === 'softmax') normalizeAxis(attrs.axis, x!.shape.length, 'softmax axis');
    return [{ shape: x!.shape, dtype: 'float32' }];
  },
  channels(attrs, inputs, outputs) {
    const declared = elementwiseChannels(inputs, outputs);
    if (attrs.fn !== 'softmax') return declared;
    // Input and output share one rank, so the softmax axis has the same index on both.
    const softmaxAxis = normalizeAxis(attrs.axis, outputs[0]!.shape.length, 'softmax axis');
    return {
      spaces: declared.spaces,
      axes: declared.axes.map((a) => (a.axis === softmaxAxis ? { ...a, mixes: true } : a)),
    };
  },
  forward: (ctx, [x]) => [applyActivation(ctx.attrs.fn, x!, ctx.attrs.alpha ?? undefined, ctx.attrs.axis)],
  flops: (attrs, _, [y]) => activationFlops(attrs.fn) * product(y!),
});

/** An activation tfjs's fused kernels (`tf.fused.matMul`, `tf.fused.conv2d`) apply in the same call. */
export interface FusedActivation {
  activation: 'linear' | 'relu' | 'relu6' | 'elu' | 'leakyrelu' | 'sigmoid';
  leakyreluAlpha?: number;
}

/**
 * The fused form of an activation, or undefined where tfjs has none (gelu, swish, tanh,
 * softmax, a scaled elu). Inference uses fused kernels, as tfjs-layers does: one call instead of
 * three. They are not used under a gradient tape, since their gradients need kernels wasm lacks.
 */
export function fusedActivation(name: ActivationName, alpha?: number): FusedActivation | undefined {
  switch (name) {
    case 'linear':
    case 'relu':
    case 'relu6':
    case 'sigmoid':
      return { activation: name };
    case 'elu':
      return alpha === undefined || alpha === 1 ? { activation: 'elu' } : undefined;
    case 'leakyRelu':
      return { activation: 'leakyrelu', leakyreluAlpha: alpha ?? 0.2 };
    default:
      return undefined;
  }
}

/** True when no gradient is being recorded, so fused inference kernels may be used. */
export function canFuse(training: boolean): boolean {
  return !training && !tf.engine().isTapeOn();
}
