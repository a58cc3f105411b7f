import { describeEachBackend, expectClose, expectNoLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../builder.js';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import { isDynnError } from '../../errors.js';
import { forwardForTraining } from '../../executor.js';
import type { Dim, SubGraph, ValueInfo } from '../../ir.js';
import { createModel, type Model } from '../../model.js';
import { resolveAttrs } from '../../op.js';
import { createRuntime } from '../../runtime.js';
import { scanOp } from './scan.js';

const runtime = createRuntime();
const [BATCH, TIME, FEATURES, HIDDEN] = [3, 4, 5, 6];

/** The step of a tanh RNN with a readout: h' = tanh(W [h, x] + b), y = V h' + c. */
function rnnBody() {
  const b = new GraphBuilder(runtime);
  const h = b.input('h', 'float32', ['batch', HIDDEN]);
  const x = b.input('x', 'float32', ['batch', FEATURES]);
  const next = b.add(
    'core.Dense',
    b.add('core.Concat', [h, x]),
    { units: HIDDEN, activation: 'tanh' },
    { name: 'cell' },
  );
  const y = b.add('core.Dense', next, { units: 2 }, { name: 'readout' });
  return b.subGraph({ next, y });
}

/** The RNN as one Scan node. */
function scanned(reverse = false) {
  const b = new GraphBuilder(runtime);
  const h0 = b.input('h0', 'float32', ['batch', HIDDEN]);
  const xs = b.input('xs', 'float32', ['batch', 'time', FEATURES]);
  const [last, ys] = b.addMulti('core.Scan', [h0, xs], { body: rnnBody(), reverse }, { name: 'rnn' });
  return b.build({ last: last!, ys: ys! });
}

/** The same RNN unrolled: the body's nodes written out once per step, each with its own weights. */
function unrolled(reverse = false) {
  const b = new GraphBuilder(runtime);
  let h = b.input('h0', 'float32', ['batch', HIDDEN]);
  const xs = b.input('xs', 'float32', ['batch', TIME, FEATURES]);
  const ys: string[] = [];
  for (let k = 0; k < TIME; k++) {
    const t = reverse ? TIME - 1 - k : k;
    const x = b.add('core.TimeStep', xs, { index: t });
    h = b.add(
      'core.Dense',
      b.add('core.Concat', [h, x]),
      { units: HIDDEN, activation: 'tanh' },
      { name: `cell${t}` },
    );
    ys[t] = b.add('core.Reshape', b.add('core.Dense', h, { units: 2 }, { name: `readout${t}` }), {
      shape: [1, 2],
    });
  }
  const stacked = b.add('core.Concat', ys, { axis: 1 });
  return b.build({ last: h, ys: stacked });
}

/** Copies the Scan body's weights into every step of the unrolled model. */
function tieWeights(scan: Model, flat: Model): void {
  for (const [name, variable] of flat.params) {
    const [node, local] = name.split('/') as [string, string];
    const layer = node.replace(/\d+$/, '');
    variable.assign(scan.params.get(`rnn/body/${layer}/${local}`)!);
  }
}

describeEachBackend('core.Scan', () => {
  for (const reverse of [false, true]) {
    it(`equals its body unrolled, outputs and gradients${reverse ? ' (reverse)' : ''}`, async () => {
      const scan = createModel(runtime, scanned(reverse), { seed: 3 });
      const flat = createModel(runtime, unrolled(reverse), { seed: 4 });
      tieWeights(scan, flat);
      const h0 = seededUniform([BATCH, HIDDEN], { seed: 1 });
      const xs = seededUniform([BATCH, TIME, FEATURES], { seed: 2 });
      await expectNoLeaks(async () => {
        const a = await scan.run({ h0, xs }, { report: false });
        const b = await flat.run({ h0, xs }, { report: false });
        await expectClose(a.outputs.last!, b.outputs.last!);
        await expectClose(a.outputs.ys!, b.outputs.ys!);
        tf.dispose([...Object.values(a.outputs), ...Object.values(b.outputs)]);
        // Gradients of one loss: the body's are the sum of the unrolled steps'.
        const loss = (model: Model) => () =>
          tf.tidy(() => {
            const { outputs } = forwardForTraining(
              model,
              new Map([
                ['h0', h0],
                ['xs', xs],
              ]),
              {},
              0,
            );
            return tf.add(tf.sum(tf.square(outputs.ys!)), tf.sum(outputs.last!)) as tf.Scalar;
          });
        const gScan = tf.variableGrads(loss(scan), [...scan.params.values()]);
        const gFlat = tf.variableGrads(loss(flat), [...flat.params.values()]);
        await expectClose(gScan.value, gFlat.value);
        for (const [name, grad] of Object.entries(gScan.grads)) {
          const [, , layer, local] = name.replace(/#\d+$/, '').split('/') as [string, string, string, string];
          const steps = Object.entries(gFlat.grads)
            .filter(([flatName]) => new RegExp(`^${layer}\\d+/${local}#`).test(flatName))
            .map(([, g]) => g);
          expect(steps).toHaveLength(TIME);
          const summed = tf.addN(steps);
          await expectClose(grad, summed);
          summed.dispose();
        }
        tf.dispose([gScan.value, gFlat.value, ...Object.values(gScan.grads), ...Object.values(gFlat.grads)]);
      });
      tf.dispose([h0, xs]);
      scan.dispose();
      flat.dispose();
    });
  }

  it('reports its body per step, at the full time length', async () => {
    const model = createModel(runtime, scanned(), { seed: 3 });
    const h0 = seededUniform([BATCH, HIDDEN], { seed: 1 });
    const xs = seededUniform([BATCH, 10, FEATURES], { seed: 2 });
    const { outputs, report } = await model.run({ h0, xs });
    const cell = report!.nodes.find((n) => n.name === 'rnn/body/cell')!;
    expect(cell).toMatchObject({ parent: 'rnn', calls: 10, rows: 10 * BATCH });
    const cellFlops = 2 * BATCH * (HIDDEN + FEATURES) * HIDDEN + 2 * BATCH * HIDDEN; // matMul + bias + tanh
    expect(cell.flops).toBeGreaterThanOrEqual(10 * cellFlops - 10 * BATCH * HIDDEN);
    // Nothing was skipped: the full cost (time = 10, not 1) is what ran.
    expect(report!.fullFlops).toBeCloseTo(report!.flops, 6);
    const costs = model.costs(BATCH, { time: 10 });
    expect(costs.find((c) => c.name === 'rnn')!.flops).toBeCloseTo(report!.fullFlops, 6);
    expect(costs.find((c) => c.name === 'rnn/body/cell')).toMatchObject({ parent: 'rnn' });
    tf.dispose([h0, xs, ...Object.values(outputs)]);
    model.dispose();
  });

  it('scans zero steps, and nests a scan in a scan', async () => {
    // Outer scan over rows of a grid [batch, rows, cols, f]; its body scans the columns.
    const inner = new GraphBuilder(runtime);
    const s = inner.input('s', 'float32', ['batch', 2]);
    const c = inner.input('c', 'float32', ['batch', FEATURES]);
    const sNext = inner.add(
      'core.Dense',
      inner.add('core.Concat', [s, c]),
      { units: 2, activation: 'tanh' },
      { name: 'cell' },
    );
    const outer = new GraphBuilder(runtime);
    const acc = outer.input('acc', 'float32', ['batch', 2]);
    const row = outer.input('row', 'float32', ['batch', 'cols', FEATURES]);
    const [rowState] = outer.addMulti(
      'core.Scan',
      [acc, row],
      { body: inner.subGraph({ sNext }) },
      { name: 'cols' },
    );
    const b = new GraphBuilder(runtime);
    const a0 = b.input('a0', 'float32', ['batch', 2]);
    const grid = b.input('grid', 'float32', ['batch', 'rows', 'cols', FEATURES]);
    const [final] = b.addMulti(
      'core.Scan',
      [a0, grid],
      { body: outer.subGraph({ rowState: rowState! }) },
      { name: 'rows' },
    );
    const graph = b.build({ final: final! });
    expect(graph.params.map((p) => p.name)).toEqual([
      'rows/body/cols/body/cell/kernel',
      'rows/body/cols/body/cell/bias',
    ]);
    const model = createModel(runtime, graph, { seed: 5 });
    const a = seededUniform([2, 2], { seed: 6 });
    const g = seededUniform([2, 3, 4, FEATURES], { seed: 7 });
    const empty = tf.zeros([2, 0, 4, FEATURES]);
    await expectNoLeaks(async () => {
      const { outputs, report } = await model.run({ a0: a, grid: g });
      expect(report!.nodes.find((n) => n.name === 'rows/body/cols/body/cell')).toMatchObject({ calls: 12 });
      // The same by hand: a row-major walk of the grid through the cell.
      const kernel = model.params.get('rows/body/cols/body/cell/kernel')!;
      const bias = model.params.get('rows/body/cols/body/cell/bias')!;
      const expected = tf.tidy(() => {
        let state: tf.Tensor = a;
        for (let r = 0; r < 3; r++) {
          for (let col = 0; col < 4; col++) {
            const x = tf.reshape(tf.slice(g, [0, r, col, 0], [2, 1, 1, FEATURES]), [2, FEATURES]);
            state = tf.tanh(tf.add(tf.matMul(tf.concat([state, x], 1), kernel), bias));
          }
        }
        return state;
      });
      await expectClose(outputs.final!, expected);
      const none = await model.run({ a0: a, grid: empty }, { report: false });
      await expectClose(none.outputs.final!, a);
      tf.dispose([expected, ...Object.values(outputs), ...Object.values(none.outputs)]);
    });
    tf.dispose([a, g, empty]);
    model.dispose();
  });
});

it('refuses a body that does not fit its inputs, naming the node', () => {
  const b = new GraphBuilder(runtime);
  const h0 = b.input('h0', 'float32', ['batch', HIDDEN + 1]);
  const xs = b.input('xs', 'float32', ['batch', 'time', FEATURES]);
  let error: unknown;
  try {
    b.addMulti('core.Scan', [h0, xs], { body: rnnBody() }, { name: 'rnn' });
  } catch (e) {
    error = e;
  }
  expect(isDynnError(error) && error.code).toBe('SHAPE_MISMATCH');
  expect((error as Error).message).toMatch(
    /Node 'rnn' \(core\.Scan\): carried value 'h0' is float32\[batch, 7\]/,
  );
});

describe('core.Scan channels', () => {
  const value = (name: string, shape: Dim[]): ValueInfo => ({ name, dtype: 'float32', shape });
  const body = (hidden: Dim): SubGraph => ({
    inputs: [value('h', ['batch', hidden]), value('x', ['batch', FEATURES])],
    outputs: [value('next', ['batch', HIDDEN]), value('y', ['batch', 2])],
    nodes: [],
  });
  const inputs = [value('h0', ['batch', HIDDEN]), value('xs', ['batch', 'time', FEATURES])];
  const outputs = [value('last', ['batch', HIDDEN]), value('ys', ['batch', 'time', 2])];
  const bodyInput = (index: number) => ({ kind: 'input' as const, index, graph: { attr: 'body' } });
  const bodyOutput = (index: number) => ({ kind: 'output' as const, index, graph: { attr: 'body' } });

  it("maps the carried state, the sequence's features and the per-step output into the body", () => {
    const attrs = resolveAttrs(scanOp, { body: body(HIDDEN) }, 'rnn');
    expect(scanOp.channels!(attrs, inputs, outputs)).toEqual({
      spaces: { 'carried0.axis1': HIDDEN, 'sequence0.axis1': FEATURES, 'perStep0.axis1': 2 },
      axes: [
        { tensor: inputTensor(0), axis: 1, space: 'carried0.axis1' },
        { tensor: bodyInput(0), axis: 1, space: 'carried0.axis1' },
        { tensor: bodyOutput(0), axis: 1, space: 'carried0.axis1' },
        { tensor: outputTensor(0), axis: 1, space: 'carried0.axis1' },
        { tensor: inputTensor(1), axis: 2, space: 'sequence0.axis1' },
        { tensor: bodyInput(1), axis: 1, space: 'sequence0.axis1' },
        { tensor: bodyOutput(1), axis: 1, space: 'perStep0.axis1' },
        { tensor: outputTensor(1), axis: 2, space: 'perStep0.axis1' },
      ],
    });
  });

  it('maps nothing on an axis the body declares symbolic', () => {
    const attrs = resolveAttrs(scanOp, { body: body('hidden') }, 'rnn');
    expect(Object.keys(scanOp.channels!(attrs, inputs, outputs).spaces)).toEqual([
      'sequence0.axis1',
      'perStep0.axis1',
    ]);
  });
});
