import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import type { Attrs } from '../../ir.js';
import { defineOp } from '../../op.js';
import { type ActivationName, activationFlops } from '../basic/activation.js';
import { linear } from '../basic/linear.js';
import { applyCellActivation, cellActivationAttr, cellChannels, checkCellInputs } from './cell-helpers.js';

/** Attributes of {@link gruCell}. */
export interface GruCellAttrs extends Attrs {
  units: number;
  resetAfter: boolean;
  activation: ActivationName;
  recurrentActivation: ActivationName;
  useBias: boolean;
}

/**
 * `core.GRUCell`: one step of a gated recurrent unit, as Keras' `GRUCell`. Inputs `x` [batch, in]
 * and `h` [batch, units]; output the next state `h'` [batch, units]. Gates in Keras order
 * (update `z`, reset `r`, candidate `h`):
 * `z = σ(x Wz + h Uz + b)`, `r = σ(x Wr + h Ur + b)`, `h' = z * h + (1 - z) * hh`, where the
 * candidate is `hh = act(x Wh + r * (h Uh + bRec))` with `resetAfter` (Keras 2+ default, bias
 * [2, 3 * units]: input bias row then recurrent bias row), else `hh = act(x Wh + (r * h) Uh + b)`
 * (bias [3 * units]). Params `kernel` [in, 3 * units], `recurrentKernel` [units, 3 * units].
 * `recurrentKernel` starts glorot-uniform, where Keras uses an orthogonal initializer.
 *
 * Channels: space `features` (`x`'s last axis, `kernel` axis 0) and space `units` (`h`, `h'`,
 * `recurrentKernel` axis 0, and with `period: units` the gate axes of `kernel`,
 * `recurrentKernel` and `bias`, which stack the three gates). Resizing sets `units`.
 */
export const gruCell = defineOp<GruCellAttrs>({
  type: 'core.GRUCell',
  version: 1,
  description: 'One step of a gated recurrent unit (Keras GRUCell): (x, h) -> next h.',
  attrs: {
    units: { kind: 'int', min: 1, doc: 'size of the state' },
    resetAfter: {
      kind: 'bool',
      default: true,
      doc: 'apply the reset gate after the recurrent projection (Keras 2+ default)',
    },
    activation: cellActivationAttr('tanh', 'activation of the candidate state'),
    recurrentActivation: cellActivationAttr('sigmoid', 'activation of the update and reset gates'),
    useBias: { kind: 'bool', default: true, doc: 'add biases to the projections' },
  },
  inputs: { min: 2 },
  params(attrs, inputs) {
    const { features } = checkCellInputs(inputs, ['h'], attrs.units);
    const u = attrs.units;
    return [
      {
        name: 'kernel',
        shape: [features, 3 * u],
        init: { kind: 'glorotUniform', fanIn: features, fanOut: 3 * u },
      },
      {
        name: 'recurrentKernel',
        shape: [u, 3 * u],
        init: { kind: 'glorotUniform', fanIn: u, fanOut: 3 * u },
      },
      ...(attrs.useBias
        ? [{ name: 'bias', shape: attrs.resetAfter ? [2, 3 * u] : [3 * u], init: { kind: 'zeros' as const } }]
        : []),
    ];
  },
  inferShape(attrs, inputs) {
    const { batch } = checkCellInputs(inputs, ['h'], attrs.units);
    return [{ shape: [batch, attrs.units], dtype: 'float32' }];
  },
  channels(attrs, inputs) {
    const { features } = checkCellInputs(inputs, ['h'], attrs.units);
    // resetAfter's bias is [2, 3 * units]: the input and recurrent bias rows.
    return cellChannels(attrs, features, [inputTensor(1), outputTensor(0)], attrs.resetAfter ? 1 : 0);
  },
  resize: (attrs, _, [h]) => ({ ...attrs, units: h!.shape[1] as number }),
  forward(ctx, [x, h]) {
    const { units, resetAfter, activation, recurrentActivation, useBias } = ctx.attrs;
    const { kernel, recurrentKernel, bias } = ctx.params as Record<string, tf.Tensor2D>;
    return [
      tf.tidy(() => {
        const state = h as tf.Tensor2D;
        const [inputBias, recurrentBias] =
          useBias && resetAfter ? tf.unstack(bias!) : [useBias ? bias : undefined, undefined];
        const [xz, xr, xh] = tf.split(linear(x!, kernel!, inputBias), 3, 1) as [
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
        ];
        const gate = (fromX: tf.Tensor, fromH: tf.Tensor) =>
          applyCellActivation(recurrentActivation, tf.add(fromX, fromH));
        let z: tf.Tensor;
        let candidateInput: tf.Tensor;
        if (resetAfter) {
          const [hz, hr, hh] = tf.split(linear(state, recurrentKernel!, recurrentBias), 3, 1) as [
            tf.Tensor,
            tf.Tensor,
            tf.Tensor,
          ];
          z = gate(xz, hz);
          candidateInput = tf.add(xh, tf.mul(gate(xr, hr), hh));
        } else {
          const [gateKernel, candidateKernel] = tf.split(recurrentKernel!, [2 * units, units], 1) as [
            tf.Tensor2D,
            tf.Tensor2D,
          ];
          const [hz, hr] = tf.split(linear(state, gateKernel), 2, 1) as [tf.Tensor, tf.Tensor];
          z = gate(xz, hz);
          candidateInput = tf.add(xh, linear(tf.mul(gate(xr, hr), state), candidateKernel));
        }
        const candidate = applyCellActivation(activation, candidateInput);
        // z * h + (1 - z) * candidate, with one multiply fewer.
        return tf.add(candidate, tf.mul(z, tf.sub(state, candidate)));
      }),
    ];
  },
  flops(attrs, [x]) {
    const [batch, features] = x as [number, number];
    const u = attrs.units;
    const cells = batch * u;
    const projections = 2 * batch * (features + u) * 3 * u;
    const biasAdds = attrs.useBias ? batch * 3 * u * (attrs.resetAfter ? 2 : 1) : 0;
    const gates = 2 * cells * (1 + activationFlops(attrs.recurrentActivation));
    // Reset product and sum of the candidate, its activation, then z * (h - hh) + hh.
    const candidate = cells * (2 + activationFlops(attrs.activation));
    return projections + biasAdds + gates + candidate + 3 * cells;
  },
});
