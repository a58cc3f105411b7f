import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import type { Attrs, Initializer } from '../../ir.js';
import { defineOp } from '../../op.js';
import { type ActivationName, activationFlops } from '../basic/activation.js';
import { linear } from '../basic/linear.js';
import { applyCellActivation, cellActivationAttr, cellChannels, checkCellInputs } from './cell-helpers.js';

/** Attributes of {@link lstmCell}. */
export interface LstmCellAttrs extends Attrs {
  units: number;
  activation: ActivationName;
  recurrentActivation: ActivationName;
  useBias: boolean;
  unitForgetBias: boolean;
}

/** Zeros, with the forget-gate slice at one when `unitForgetBias` (gate order i, f, c, o). */
function lstmBiasInit(units: number, unitForgetBias: boolean): Initializer {
  if (!unitForgetBias) return { kind: 'zeros' };
  return {
    kind: 'concat',
    parts: [
      { size: units, init: { kind: 'zeros' } },
      { size: units, init: { kind: 'ones' } },
      { size: 2 * units, init: { kind: 'zeros' } },
    ],
  };
}

/**
 * `core.LSTMCell`: one step of a long short-term memory, as Keras' `LSTMCell`. Inputs `x`
 * [batch, in], `h` [batch, units], `c` [batch, units]; outputs the next `h'` and `c'`, both
 * [batch, units]. With the pre-activations `x W + h U + b` split in Keras gate order (input `i`,
 * forget `f`, cell `g`, output `o`): `c' = σ(f) * c + σ(i) * act(g)`, `h' = σ(o) * act(c')`.
 * Params `kernel` [in, 4 * units], `recurrentKernel` [units, 4 * units], `bias` [4 * units].
 * `recurrentKernel` starts glorot-uniform, where Keras uses an orthogonal initializer; `bias`
 * starts at zero, with the forget slice at one when `unitForgetBias` (Keras' default).
 *
 * Channels: space `features` (`x`'s last axis, `kernel` axis 0) and space `units` (`h`, `c`,
 * `h'`, `c'`, `recurrentKernel` axis 0, and with `period: units` the gate axes of `kernel`,
 * `recurrentKernel` and `bias`, which stack the four gates). Resizing sets `units`.
 */
export const lstmCell = defineOp<LstmCellAttrs>({
  type: 'core.LSTMCell',
  version: 1,
  description: 'One step of a long short-term memory (Keras LSTMCell): (x, h, c) -> (next h, next c).',
  attrs: {
    units: { kind: 'int', min: 1, doc: 'size of the hidden and cell states' },
    activation: cellActivationAttr('tanh', 'activation of the cell candidate and of the output cell state'),
    recurrentActivation: cellActivationAttr('sigmoid', 'activation of the input, forget and output gates'),
    useBias: { kind: 'bool', default: true, doc: 'add a bias to the gate pre-activations' },
    unitForgetBias: { kind: 'bool', default: true, doc: 'start the forget-gate bias at one (as Keras)' },
  },
  inputs: { min: 3 },
  outputs: 2,
  params(attrs, inputs) {
    const { features } = checkCellInputs(inputs, ['h', 'c'], attrs.units);
    const u = attrs.units;
    return [
      {
        name: 'kernel',
        shape: [features, 4 * u],
        init: { kind: 'glorotUniform', fanIn: features, fanOut: 4 * u },
      },
      {
        name: 'recurrentKernel',
        shape: [u, 4 * u],
        init: { kind: 'glorotUniform', fanIn: u, fanOut: 4 * u },
      },
      ...(attrs.useBias
        ? [{ name: 'bias', shape: [4 * u], init: lstmBiasInit(u, attrs.unitForgetBias) }]
        : []),
    ];
  },
  inferShape(attrs, inputs) {
    const { batch } = checkCellInputs(inputs, ['h', 'c'], attrs.units);
    const state = { shape: [batch, attrs.units], dtype: 'float32' as const };
    return [state, { ...state, shape: [...state.shape] }];
  },
  channels(attrs, inputs) {
    const { features } = checkCellInputs(inputs, ['h', 'c'], attrs.units);
    const states = [inputTensor(1), inputTensor(2), outputTensor(0), outputTensor(1)];
    return cellChannels(attrs, features, states, 0);
  },
  resize: (attrs, _, [h]) => ({ ...attrs, units: h!.shape[1] as number }),
  forward(ctx, [x, h, c]) {
    const { activation, recurrentActivation, useBias } = ctx.attrs;
    const { kernel, recurrentKernel, bias } = ctx.params as Record<string, tf.Tensor2D>;
    return tf.tidy(() => {
      const preActivations = tf.add(
        linear(x!, kernel!, useBias ? bias : undefined),
        linear(h!, recurrentKernel!),
      );
      const [i, f, g, o] = tf.split(preActivations, 4, 1) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const gate = (t: tf.Tensor) => applyCellActivation(recurrentActivation, t);
      const nextC = tf.add(tf.mul(gate(f), c!), tf.mul(gate(i), applyCellActivation(activation, g)));
      const nextH = tf.mul(gate(o), applyCellActivation(activation, nextC));
      return [nextH, nextC];
    });
  },
  flops(attrs, [x]) {
    const [batch, features] = x as [number, number];
    const u = attrs.units;
    const cells = batch * u;
    const projections = 2 * batch * (features + u) * 4 * u;
    // Sum of the two projections, plus the bias.
    const sums = batch * 4 * u * (attrs.useBias ? 2 : 1);
    const gates = 3 * cells * activationFlops(attrs.recurrentActivation);
    const activations = 2 * cells * activationFlops(attrs.activation);
    // f * c + i * g, then o * act(c').
    return projections + sums + gates + activations + 4 * cells;
  },
});
