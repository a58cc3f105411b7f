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
import { type GruCellAttrs, gruCell } from './gru-cell.js';

type Activation = 'tanh' | 'sigmoid' | 'elu' | 'relu';

const scalarActivations: Record<Activation, (v: number) => number> = {
  tanh: Math.tanh,
  sigmoid: (v) => 1 / (1 + Math.exp(-v)),
  elu: (v) => (v > 0 ? v : Math.expm1(v)),
  relu: (v) => Math.max(0, v),
};

/** Naive Keras GRUCell step on plain arrays (row-major), both reset_after variants. */
function referenceGru(
  x: Float32Array,
  h: Float32Array,
  weights: { kernel: Float32Array; recurrentKernel: Float32Array; bias?: Float32Array },
  attrs: { units: number; resetAfter: boolean; activation: Activation; recurrentActivation: Activation },
  batch: number,
): Float32Array {
  const u = attrs.units;
  const features = x.length / batch;
  const act = scalarActivations[attrs.activation];
  const gateAct = scalarActivations[attrs.recurrentActivation];
  const { kernel, recurrentKernel, bias } = weights;
  // bias: [2, 3u] with reset_after (input row, recurrent row), else [3u].
  const inputBias = (j: number) => bias?.[j] ?? 0;
  const recurrentBias = (j: number) => (attrs.resetAfter ? (bias?.[3 * u + j] ?? 0) : 0);
  const out = new Float32Array(batch * u);
  for (let b = 0; b < batch; b++) {
    const fromX = (j: number) => {
      let s = inputBias(j);
      for (let c = 0; c < features; c++) s += x[b * features + c]! * kernel[c * 3 * u + j]!;
      return s;
    };
    const fromH = (j: number, state: (k: number) => number) => {
      let s = 0;
      for (let k = 0; k < u; k++) s += state(k) * recurrentKernel[k * 3 * u + j]!;
      return s;
    };
    const hPrev = (k: number) => h[b * u + k]!;
    const reset = Array.from({ length: u }, (_, k) =>
      gateAct(fromX(u + k) + fromH(u + k, hPrev) + recurrentBias(u + k)),
    );
    for (let k = 0; k < u; k++) {
      const z = gateAct(fromX(k) + fromH(k, hPrev) + recurrentBias(k));
      const recurrentCandidate = attrs.resetAfter
        ? reset[k]! * (fromH(2 * u + k, hPrev) + recurrentBias(2 * u + k))
        : fromH(2 * u + k, (m) => reset[m]! * hPrev(m));
      const candidate = act(fromX(2 * u + k) + recurrentCandidate);
      out[b * u + k] = z * hPrev(k) + (1 - z) * candidate;
    }
  }
  return out;
}

/** One step of tfjs-layers' GRU (reset_after = false only) with the given weights. */
async function tfjsLayersGru(
  x: tf.Tensor,
  h: tf.Tensor,
  weights: tf.Tensor[],
  attrs: { units: number; activation: Activation; useBias: boolean },
): Promise<Float32Array> {
  const layer = tfl.layers.gru({
    units: attrs.units,
    activation: attrs.activation,
    recurrentActivation: 'sigmoid',
    useBias: attrs.useBias,
    // The default orthogonal initializer needs tfjs's chained ops; weights are set below anyway.
    recurrentInitializer: 'zeros',
    returnState: false,
  });
  const sequence = tf.expandDims(x, 1);
  try {
    tf.dispose(layer.apply(sequence, { initialState: [h] }) as tf.Tensor);
    layer.setWeights(weights);
    const out = layer.apply(sequence, { initialState: [h] }) as tf.Tensor;
    const values = (await out.data()) as Float32Array;
    out.dispose();
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

function cellInputs(): [tf.Tensor, tf.Tensor] {
  return [seededUniform([batch, features], { seed: 1 }), seededUniform([batch, units], { seed: 2 })];
}

describeEachBackend('core.GRUCell', (backend) => {
  guardLeaks();

  const cases: { name: string; attrs: Attrs }[] = [
    { name: 'defaults (reset after)', attrs: { units } },
    { name: 'reset after, no bias, elu', attrs: { units, useBias: false, activation: 'elu' } },
    { name: 'reset before', attrs: { units, resetAfter: false } },
    {
      name: 'reset before, relu, no bias',
      attrs: { units, resetAfter: false, activation: 'relu', useBias: false },
    },
  ];

  for (const { name, attrs } of cases) {
    it(`matches a naive Keras reference: ${name}`, async () => {
      const resolved = resolveAttrs(gruCell, attrs, 'gru');
      const inputs = cellInputs();
      const params = opParams(gruCell, attrs, inputs, 5);
      const { outputs } = await runOp(gruCell, { attrs, inputs, params });
      const expected = referenceGru(
        (await inputs[0].data()) as Float32Array,
        (await inputs[1].data()) as Float32Array,
        {
          kernel: (await params.kernel!.data()) as Float32Array,
          recurrentKernel: (await params.recurrentKernel!.data()) as Float32Array,
          ...(params.bias ? { bias: (await params.bias.data()) as Float32Array } : {}),
        },
        resolved as GruCellAttrs & { activation: Activation; recurrentActivation: Activation },
        batch,
      );
      await expectClose(outputs[0]!, expected, { label: name });
      tf.dispose([...outputs, ...inputs, ...Object.values(params)]);
    });
  }

  for (const { name, attrs } of cases.filter((c) => c.attrs.resetAfter === false)) {
    it(`matches tfjs-layers GRU (reset before): ${name}`, async () => {
      const { useBias, activation } = resolveAttrs(gruCell, attrs, 'gru');
      const inputs = cellInputs();
      const params = opParams(gruCell, attrs, inputs, 6);
      const { outputs } = await runOp(gruCell, { attrs, inputs, params });
      const weights = [params.kernel!, params.recurrentKernel!, ...(useBias ? [params.bias!] : [])];
      const expected = await tfjsLayersGru(inputs[0], inputs[1], weights, {
        units,
        activation: activation as Activation,
        useBias,
      });
      await expectClose(outputs[0]!, expected, { label: name });
      tf.dispose([...outputs, ...inputs, ...Object.values(params)]);
    });
  }

  for (const resetAfter of [true, false]) {
    it(`has correct gradients for inputs and params (resetAfter ${resetAfter})`, async () => {
      const inputs = cellInputs();
      await checkOpGradients(
        gruCell,
        { attrs: { units, resetAfter }, inputs },
        { samples: gradientSamples(backend) },
      );
      tf.dispose(inputs);
    });
  }
});

describe('core.GRUCell shapes, params and flops', () => {
  const info = (shape: ValueInfo['shape']): ValueInfo => ({ name: 'v', dtype: 'float32', shape });

  it('infers a symbolic batch and declares Keras-shaped params', () => {
    const attrs = resolveAttrs(gruCell, { units: 5 }, 'gru');
    const inputs = [info([BATCH, 7]), info([BATCH, 5])];
    expect(gruCell.inferShape(attrs, inputs)).toEqual([{ shape: [BATCH, 5], dtype: 'float32' }]);
    expect(gruCell.params!(attrs, inputs)).toEqual([
      { name: 'kernel', shape: [7, 15], init: { kind: 'glorotUniform', fanIn: 7, fanOut: 15 } },
      { name: 'recurrentKernel', shape: [5, 15], init: { kind: 'glorotUniform', fanIn: 5, fanOut: 15 } },
      { name: 'bias', shape: [2, 15], init: { kind: 'zeros' } },
    ]);
    const before = resolveAttrs(gruCell, { units: 5, resetAfter: false }, 'gru');
    expect(gruCell.params!(before, inputs).map((p) => p.shape)).toEqual([[7, 15], [5, 15], [15]]);
  });

  it('rejects a state of the wrong size or rank', () => {
    const attrs = resolveAttrs(gruCell, { units: 5 }, 'gru');
    expect(() => gruCell.inferShape(attrs, [info([BATCH, 7]), info([BATCH, 4])])).toThrow(
      /state h must have shape \[batch, 5\], got \[batch, 4\]/,
    );
    expect(() => gruCell.inferShape(attrs, [info([BATCH, 2, 7]), info([BATCH, 5])])).toThrow(
      /input x must have shape \[batch, features\]/,
    );
    expect(() => gruCell.inferShape(attrs, [info([3, 7]), info([2, 5])])).toThrow(
      /batch 2, but x has batch 3/,
    );
  });

  it('counts projections, gates and the state update', () => {
    const attrs = resolveAttrs(gruCell, { units: 3 }, 'gru');
    // Projections 2*2*(4+3)*9 = 252; biases 2*9*2 = 36; gates 2*6*(1+4) = 60;
    // candidate 6*(2+4) = 36; update 3*6 = 18.
    expect(
      gruCell.flops(
        attrs,
        [
          [2, 4],
          [2, 3],
        ],
        [[2, 3]],
      ),
    ).toBe(252 + 36 + 60 + 36 + 18);
  });
});

describe('core.GRUCell channels', () => {
  const info = (shape: ValueInfo['shape']): ValueInfo => ({ name: 'v', dtype: 'float32', shape });
  const inputs = [info([BATCH, 4]), info([BATCH, 3])];

  it('ties the state to the recurrent rows and, per gate block, to the kernel columns and the bias', () => {
    const attrs = resolveAttrs(gruCell, { units: 3 }, 'gru');
    expect(gruCell.channels!(attrs, inputs, [info([BATCH, 3])])).toEqual({
      spaces: { features: 4, units: 3 },
      axes: [
        { tensor: inputTensor(0), axis: 1, space: 'features' },
        { tensor: paramTensor('kernel'), axis: 0, space: 'features' },
        { tensor: inputTensor(1), axis: 1, space: 'units' },
        { tensor: outputTensor(0), axis: 1, space: 'units' },
        { tensor: paramTensor('recurrentKernel'), axis: 0, space: 'units' },
        { tensor: paramTensor('kernel'), axis: 1, space: 'units', period: 3 },
        { tensor: paramTensor('recurrentKernel'), axis: 1, space: 'units', period: 3 },
        // resetAfter: bias [2, 3 * units].
        { tensor: paramTensor('bias'), axis: 1, space: 'units', period: 3 },
      ],
    });
    const before = resolveAttrs(gruCell, { units: 3, resetAfter: false }, 'gru');
    const bias = gruCell.channels!(before, inputs, [info([BATCH, 3])]).axes.at(-1);
    expect(bias).toEqual({ tensor: paramTensor('bias'), axis: 0, space: 'units', period: 3 });
  });

  it('resizes units so that the state and the params shrink', () => {
    const attrs = resolveAttrs(gruCell, { units: 3 }, 'gru');
    const smaller = [info([BATCH, 4]), info([BATCH, 2])];
    const resized = gruCell.resize!(attrs, smaller, [info([BATCH, 2])], { features: 4, units: 2 });
    expect(gruCell.inferShape(resized, smaller)[0]!.shape).toEqual([BATCH, 2]);
    expect(gruCell.params!(resized, smaller).map((p) => p.shape)).toEqual([
      [4, 6],
      [2, 6],
      [2, 6],
    ]);
  });
});
