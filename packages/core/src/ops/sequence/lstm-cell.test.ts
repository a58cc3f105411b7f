import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  isGpuBackend,
  opParams,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import { type Attrs, BATCH, type ValueInfo } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { lstmCell } from './lstm-cell.js';

/** One step of tfjs-layers' LSTM from the state (h, c) with the given weights: [h', c']. */
async function tfjsLayersLstm(
  inputs: tf.Tensor[],
  weights: tf.Tensor[],
  attrs: { units: number; activation: 'tanh' | 'elu'; useBias: boolean },
): Promise<Float32Array[]> {
  const [x, h, c] = inputs as [tf.Tensor, tf.Tensor, tf.Tensor];
  const layer = tfl.layers.lstm({
    units: attrs.units,
    activation: attrs.activation,
    recurrentActivation: 'sigmoid',
    useBias: attrs.useBias,
    // The default orthogonal initializer needs tfjs's chained ops; weights are set below anyway.
    recurrentInitializer: 'zeros',
    returnState: true,
  });
  const sequence = tf.expandDims(x, 1);
  try {
    tf.dispose(layer.apply(sequence, { initialState: [h, c] }) as tf.Tensor[]);
    layer.setWeights(weights);
    // With returnState: [output, h, c]; the output of a single step is h.
    const [, nextH, nextC] = layer.apply(sequence, { initialState: [h, c] }) as tf.Tensor[];
    const values = [(await nextH!.data()) as Float32Array, (await nextC!.data()) as Float32Array];
    tf.dispose([nextH!, nextC!]);
    return values;
  } finally {
    sequence.dispose();
    layer.dispose();
  }
}

/** Elements probed per tensor: software WebGL/WebGPU take ~50 ms per finite difference. */
const gradientSamples = (backend: string) => (isGpuBackend(backend) ? 3 : 8);

const batch = 2;
const features = 4;
const units = 3;

function cellInputs(): tf.Tensor[] {
  return [
    seededUniform([batch, features], { seed: 1 }),
    seededUniform([batch, units], { seed: 2 }),
    seededUniform([batch, units], { seed: 3 }),
  ];
}

describeEachBackend('core.LSTMCell', (backend) => {
  guardLeaks();

  const cases: { name: string; attrs: Attrs }[] = [
    { name: 'defaults', attrs: { units } },
    { name: 'elu, no bias', attrs: { units, activation: 'elu', useBias: false } },
  ];

  for (const { name, attrs } of cases) {
    it(`matches tfjs-layers LSTM: ${name}`, async () => {
      const { useBias, activation } = resolveAttrs(lstmCell, attrs, 'lstm');
      const inputs = cellInputs();
      const params = opParams(lstmCell, attrs, inputs, 5);
      const { outputs } = await runOp(lstmCell, { attrs, inputs, params });
      const weights = [params.kernel!, params.recurrentKernel!, ...(useBias ? [params.bias!] : [])];
      const [expectedH, expectedC] = await tfjsLayersLstm(inputs, weights, {
        units,
        activation: activation as 'tanh' | 'elu',
        useBias,
      });
      await expectClose(outputs[0]!, expectedH!, { label: `${name} h'` });
      await expectClose(outputs[1]!, expectedC!, { label: `${name} c'` });
      tf.dispose([...outputs, ...inputs, ...Object.values(params)]);
    });
  }

  for (const { name, attrs } of cases) {
    it(`has correct gradients for inputs and params: ${name}`, async () => {
      const inputs = cellInputs();
      await checkOpGradients(lstmCell, { attrs, inputs }, { samples: gradientSamples(backend) });
      tf.dispose(inputs);
    });
  }
});

describe('core.LSTMCell shapes, params and flops', () => {
  const info = (shape: ValueInfo['shape']): ValueInfo => ({ name: 'v', dtype: 'float32', shape });

  it('infers a symbolic batch for both outputs and declares Keras-shaped params', () => {
    const attrs = resolveAttrs(lstmCell, { units: 5 }, 'lstm');
    const inputs = [info([BATCH, 7]), info([BATCH, 5]), info([BATCH, 5])];
    const state = { shape: [BATCH, 5], dtype: 'float32' };
    expect(lstmCell.inferShape(attrs, inputs)).toEqual([state, state]);
    expect(lstmCell.params!(attrs, inputs)).toEqual([
      { name: 'kernel', shape: [7, 20], init: { kind: 'glorotUniform', fanIn: 7, fanOut: 20 } },
      { name: 'recurrentKernel', shape: [5, 20], init: { kind: 'glorotUniform', fanIn: 5, fanOut: 20 } },
      {
        name: 'bias',
        shape: [20],
        // Keras' unit_forget_bias: the forget slice (second quarter) starts at one.
        init: {
          kind: 'concat',
          parts: [
            { size: 5, init: { kind: 'zeros' } },
            { size: 5, init: { kind: 'ones' } },
            { size: 10, init: { kind: 'zeros' } },
          ],
        },
      },
    ]);
    const noBias = resolveAttrs(lstmCell, { units: 5, useBias: false }, 'lstm');
    expect(lstmCell.params!(noBias, inputs).map((p) => p.name)).toEqual(['kernel', 'recurrentKernel']);
  });

  it('rejects a cell state of the wrong size and a symbolic feature size', () => {
    const attrs = resolveAttrs(lstmCell, { units: 5 }, 'lstm');
    expect(() => lstmCell.inferShape(attrs, [info([BATCH, 7]), info([BATCH, 5]), info([BATCH, 6])])).toThrow(
      /state c must have shape \[batch, 5\], got \[batch, 6\]/,
    );
    expect(() =>
      lstmCell.inferShape(attrs, [info([BATCH, 'f']), info([BATCH, 5]), info([BATCH, 5])]),
    ).toThrow(/input x needs a known feature size/);
  });

  it('counts projections, gates and the state updates', () => {
    const attrs = resolveAttrs(lstmCell, { units: 3 }, 'lstm');
    // Projections 2*2*(4+3)*12 = 336; sums 2*12*2 = 48; gates 3*6*4 = 72; activations 2*6*4 = 48;
    // updates 4*6 = 24.
    expect(
      lstmCell.flops(
        attrs,
        [
          [2, 4],
          [2, 3],
          [2, 3],
        ],
        [
          [2, 3],
          [2, 3],
        ],
      ),
    ).toBe(336 + 48 + 72 + 48 + 24);
  });
});

describe('core.LSTMCell channels', () => {
  const info = (shape: ValueInfo['shape']): ValueInfo => ({ name: 'v', dtype: 'float32', shape });

  it('ties both states to the recurrent rows and, per gate block, to the kernel columns and the bias', () => {
    const attrs = resolveAttrs(lstmCell, { units: 3 }, 'lstm');
    const state = info([BATCH, 3]);
    expect(lstmCell.channels!(attrs, [info([BATCH, 4]), state, state], [state, state])).toEqual({
      spaces: { features: 4, units: 3 },
      axes: [
        { tensor: inputTensor(0), axis: 1, space: 'features' },
        { tensor: paramTensor('kernel'), axis: 0, space: 'features' },
        { tensor: inputTensor(1), axis: 1, space: 'units' },
        { tensor: inputTensor(2), axis: 1, space: 'units' },
        { tensor: outputTensor(0), axis: 1, space: 'units' },
        { tensor: outputTensor(1), axis: 1, space: 'units' },
        { tensor: paramTensor('recurrentKernel'), axis: 0, space: 'units' },
        { tensor: paramTensor('kernel'), axis: 1, space: 'units', period: 3 },
        { tensor: paramTensor('recurrentKernel'), axis: 1, space: 'units', period: 3 },
        { tensor: paramTensor('bias'), axis: 0, space: 'units', period: 3 },
      ],
    });
  });

  it('resizes units so that the states and the params shrink', () => {
    const attrs = resolveAttrs(lstmCell, { units: 3 }, 'lstm');
    const state = info([BATCH, 2]);
    const smaller = [info([BATCH, 4]), state, state];
    const resized = lstmCell.resize!(attrs, smaller, [state, state], { features: 4, units: 2 });
    expect(lstmCell.inferShape(resized, smaller).map((o) => o.shape)).toEqual([
      [BATCH, 2],
      [BATCH, 2],
    ]);
    expect(lstmCell.params!(resized, smaller).map((p) => p.shape)).toEqual([[4, 8], [2, 8], [8]]);
  });
});
