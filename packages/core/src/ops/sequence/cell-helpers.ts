import type * as tf from '@tensorflow/tfjs-core';
import { type ChannelTensor, inputTensor, type OpChannels, paramTensor } from '../../channel-axes.js';
import type { Dim, ValueInfo } from '../../ir.js';
import type { AttrSpec } from '../../op.js';
import { type ActivationName, activationAttr, applyActivation } from '../basic/activation.js';

/** An activation attribute of a recurrent cell, with its Keras default. */
export function cellActivationAttr(defaultName: ActivationName, doc: string): AttrSpec {
  return { ...activationAttr, default: defaultName, doc };
}

/**
 * Applies an activation named by a recurrent cell's attribute, with the parameters Keras gives
 * the activation strings (`'elu'`: alpha 1, `'leaky_relu'`: negative slope 0.2).
 */
export function applyCellActivation(name: ActivationName, x: tf.Tensor): tf.Tensor {
  return applyActivation(name, x, name === 'elu' ? 1 : 0.2);
}

function describe(dims: readonly Dim[]): string {
  return `[${dims.join(', ')}]`;
}

/**
 * Checks the inputs of a recurrent cell: `x` of shape [batch, features] followed by state tensors
 * of shape [batch, units]. Returns the batch dimension and the (numeric) feature count of `x`.
 * Throws a plain `Error` naming the offending input.
 */
export function checkCellInputs(
  inputs: readonly ValueInfo[],
  stateNames: readonly string[],
  units: number,
): { batch: Dim; features: number } {
  const [x, ...states] = inputs;
  if (x === undefined || x.shape.length !== 2) {
    throw new Error(`input x must have shape [batch, features], got ${describe(x?.shape ?? [])}`);
  }
  const [batch, features] = x.shape as [Dim, Dim];
  if (typeof features !== 'number') {
    throw new Error(`input x needs a known feature size (last dimension), got '${features}'`);
  }
  stateNames.forEach((name, i) => {
    const state = states[i];
    if (state === undefined) throw new Error(`missing state input ${name}`);
    const [stateBatch, stateUnits] = state.shape;
    if (state.shape.length !== 2 || stateUnits !== units) {
      throw new Error(`state ${name} must have shape [batch, ${units}], got ${describe(state.shape)}`);
    }
    if (typeof batch === 'number' && typeof stateBatch === 'number' && batch !== stateBatch) {
      throw new Error(`state ${name} has batch ${stateBatch}, but x has batch ${batch}`);
    }
  });
  return { batch, features };
}

/**
 * The channels of a recurrent cell: space `features` (the input's features, `kernel` axis 0) and
 * space `units` (the state inputs and outputs, `recurrentKernel` axis 0, and with `period: units`
 * the gate axes of `kernel`, `recurrentKernel` and `bias`: unit u owns column u of each stacked
 * gate block). A softmax activation normalises over the units, so it marks them mixing.
 */
export function cellChannels(
  attrs: { units: number; activation: ActivationName; recurrentActivation: ActivationName; useBias: boolean },
  features: number,
  states: readonly ChannelTensor[],
  biasAxis: number,
): OpChannels {
  const { units } = attrs;
  const mixes =
    attrs.activation === 'softmax' || attrs.recurrentActivation === 'softmax' ? { mixes: true } : {};
  const gates = { space: 'units', period: units, ...mixes };
  return {
    spaces: { features, units },
    axes: [
      { tensor: inputTensor(0), axis: 1, space: 'features' },
      { tensor: paramTensor('kernel'), axis: 0, space: 'features' },
      ...states.map((tensor) => ({ tensor, axis: 1, space: 'units', ...mixes })),
      { tensor: paramTensor('recurrentKernel'), axis: 0, space: 'units', ...mixes },
      { tensor: paramTensor('kernel'), axis: 1, ...gates },
      { tensor: paramTensor('recurrentKernel'), axis: 1, ...gates },
      ...(attrs.useBias ? [{ tensor: paramTensor('bias'), axis: biasAxis, ...gates }] : []),
    ],
  };
}
