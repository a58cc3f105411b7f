import * as tf from '@tensorflow/tfjs-core';
import { type ChannelAxis, inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import type { ValueInfo } from '../../ir.js';
import { defineOp } from '../../op.js';
import {
  type ActivationName,
  activationAttr,
  activationFlops,
  applyActivation,
  canFuse,
  fusedActivation,
} from './activation.js';
import { linear } from './linear.js';
import { formatShape, product } from './shape-helpers.js';

/** Attributes of {@link denseOp}. */
export type DenseAttrs = {
  units: number;
  useBias: boolean;
  activation: ActivationName;
};

/**
 * The size of the last axis Dense contracts; throws when the input cannot feed a Dense (rank < 2,
 * a symbolic last axis, not float32).
 */
function featuresOf(x: ValueInfo): number {
  const features = x.shape[x.shape.length - 1];
  if (x.shape.length < 2 || typeof features !== 'number') {
    throw new Error(
      `Dense needs an input of rank >= 2 whose last dimension is a number, got ${formatShape(x.shape)}`,
    );
  }
  if (x.dtype !== 'float32') throw new Error(`Dense needs a float32 input, got ${x.dtype}`);
  return features;
}

/**
 * `core.Dense`: `activation(x @ kernel + bias)` over the last axis of an input of rank >= 2, like
 * Keras' Dense. Params: `kernel` [in, units] (Glorot uniform), `bias` [units] (zeros).
 *
 * Channels: space `in` (the input's last axis, `kernel` axis 0) and space `out` (`kernel` axis 1,
 * `bias`, the output's last axis); a softmax activation mixes `out`. Resizing sets `units`.
 */
export const denseOp = defineOp<DenseAttrs>({
  type: 'core.Dense',
  version: 1,
  description: 'A fully connected layer applied to the last axis: activation(x @ kernel + bias).',
  attrs: {
    units: { kind: 'int', min: 1, doc: 'output features' },
    useBias: { kind: 'bool', default: true, doc: 'adds a learned bias' },
    activation: activationAttr,
  },
  inputs: { min: 1 },
  params(attrs, [x]) {
    const features = featuresOf(x!);
    return [
      {
        name: 'kernel',
        shape: [features, attrs.units],
        init: { kind: 'glorotUniform', fanIn: features, fanOut: attrs.units },
      },
      ...(attrs.useBias ? [{ name: 'bias', shape: [attrs.units], init: { kind: 'zeros' as const } }] : []),
    ];
  },
  inferShape(attrs, [x]) {
    featuresOf(x!);
    return [{ shape: [...x!.shape.slice(0, -1), attrs.units], dtype: 'float32' }];
  },
  channels(attrs, [x], [y]) {
    // A softmax over the units makes every output depend on all of them.
    const mixes = attrs.activation === 'softmax' ? { mixes: true } : {};
    const out: ChannelAxis[] = [
      { tensor: paramTensor('kernel'), axis: 1, space: 'out', ...mixes },
      ...(attrs.useBias ? [{ tensor: paramTensor('bias'), axis: 0, space: 'out', ...mixes }] : []),
      { tensor: outputTensor(0), axis: y!.shape.length - 1, space: 'out', ...mixes },
    ];
    return {
      spaces: { in: featuresOf(x!), out: attrs.units },
      axes: [
        { tensor: inputTensor(0), axis: x!.shape.length - 1, space: 'in' },
        { tensor: paramTensor('kernel'), axis: 0, space: 'in' },
        ...out,
      ],
    };
  },
  resize: (attrs, _, [y]) => ({ ...attrs, units: y!.shape[y!.shape.length - 1] as number }),
  forward(ctx, [x]) {
    const { kernel, bias } = ctx.params;
    const fused = fusedActivation(ctx.attrs.activation);
    if (fused && canFuse(ctx.training)) {
      return [
        tf.tidy(() => {
          const k = x!.shape[x!.rank - 1]!;
          const flat = x!.rank === 2 ? (x as tf.Tensor2D) : (tf.reshape(x!, [-1, k]) as tf.Tensor2D);
          const y = tf.fused.matMul({
            a: flat,
            b: kernel as tf.Tensor2D,
            ...(ctx.attrs.useBias ? { bias } : {}),
            ...fused,
          });
          return x!.rank === 2 ? y : tf.reshape(y, [...x!.shape.slice(0, -1), ctx.attrs.units]);
        }),
      ];
    }
    return [
      tf.tidy(() =>
        applyActivation(
          ctx.attrs.activation,
          linear(x!, kernel as tf.Tensor2D, ctx.attrs.useBias ? bias : undefined, ctx.inputGradients[0]),
        ),
      ),
    ];
  },
  flops(attrs, [x]) {
    const features = x![x!.length - 1]!;
    const rows = product(x!) / features;
    const perOutput = 2 * features + (attrs.useBias ? 1 : 0) + activationFlops(attrs.activation);
    return rows * attrs.units * perOutput;
  },
});
