import { describeEachBackend, expectClose, expectNoLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { forwardForTraining } from './executor.js';
import { createModel } from './model.js';
import { defineOp, type OpResult } from './op.js';
import { definePlugin } from './plugin.js';
import { createRuntime } from './runtime.js';

const elementwise = (
  _: unknown,
  [x]: readonly { dtype: 'float32' | 'int32' | 'bool'; shape: (number | string)[] }[],
) => [{ shape: x!.shape, dtype: x!.dtype }];
const size = (_: unknown, [x]: readonly number[][]) => x!.reduce((a, b) => a * b, 1);

/** Multiplies by a scalar run option `test.scale` (default 1): shows options reach ops. */
const scale = defineOp({
  type: 'test.Scale',
  version: 1,
  description: 'Multiplies by the run option test.scale.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: elementwise,
  forward: (ctx, [x]) => [tf.mul(x!, (ctx.options['test.scale'] as number | undefined) ?? 1)],
  flops: size,
});

/** Counts the rows it sees, in the report and in a list the test reads. */
const seen: number[] = [];
const count = defineOp({
  type: 'test.Count',
  version: 1,
  description: 'Identity that records how many rows it computed.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: elementwise,
  forward: (ctx, [x]) => {
    seen.push(x!.shape[0]!);
    ctx.record('rows', x!.shape[0]);
    return [tf.clone(x!)];
  },
  flops: size,
});

/** Retires rows whose first feature is negative, emitting them (times 10) to output `y`. */
const retire = defineOp({
  type: 'test.Retire',
  version: 1,
  description: 'Retires rows with a negative first feature.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: elementwise,
  async decide(_, [x]) {
    const first = tf.tidy(() => tf.reshape(tf.slice(x!, [0, 0], [-1, 1]), [-1]));
    const values = await first.data();
    first.dispose();
    return Int32Array.from([...values.keys()].filter((i) => values[i]! < 0));
  },
  forward(ctx, [x]): OpResult {
    const rows = ctx.decision as Int32Array;
    const indices = tf.tensor1d(rows, 'int32');
    const emitted = tf.tidy(() => tf.mul(tf.gather(x!, indices), 10));
    indices.dispose();
    return { outputs: [tf.clone(x!)], retire: { rows, outputs: { y: emitted } } };
  },
  flops: size,
});

/** Keeps a running sum of its inputs as state, and adds the batch mean as an auxiliary loss. */
const accumulate = defineOp({
  type: 'test.Accumulate',
  version: 1,
  description: 'Adds each batch to a state tensor.',
  attrs: {},
  inputs: { min: 1 },
  state: (_, [x]) => [{ name: 'total', shape: [x!.shape[1] as number], init: { kind: 'zeros' } }],
  inferShape: elementwise,
  forward(ctx, [x]) {
    ctx.updateState(
      'total',
      tf.tidy(() => tf.add(ctx.state.total!, tf.sum(x!, 0))),
    );
    ctx.addLoss(tf.mean(x!), 'mean');
    return [tf.clone(x!)];
  },
  flops: size,
});

/** Records, per call, which of its inputs need a gradient. */
const gradientFlags: boolean[][] = [];
const probe = defineOp({
  type: 'test.Probe',
  version: 1,
  description: 'Identity that records ctx.inputGradients.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: elementwise,
  forward(ctx, [x]) {
    gradientFlags.push([...ctx.inputGradients]);
    return [tf.clone(x!)];
  },
  flops: size,
});

/** Adds a bias shared by every node that names the same `key`. */
const sharedBias = defineOp({
  type: 'test.SharedBias',
  version: 1,
  description: 'Adds a bias shared across nodes.',
  attrs: { key: { kind: 'string' } },
  inputs: { min: 1 },
  params: (attrs, [x]) => [
    { name: 'bias', shape: [x!.shape[1] as number], init: { kind: 'ones' }, shared: attrs.key as string },
  ],
  inferShape: elementwise,
  forward: (ctx, [x]) => [tf.add(x!, ctx.params.bias!)],
  flops: size,
});

const testPlugin = definePlugin({
  name: 'test-plugin',
  domain: 'test',
  opset: 1,
  ops: [scale, count, retire, accumulate, sharedBias, probe],
});
const runtime = createRuntime({ plugins: [testPlugin] });

function dynamicGraph() {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 2]);
  const h = b.add('test.Count', x, {}, { name: 'before' });
  const r = b.add('test.Retire', h, {}, { name: 'exit' });
  const c = b.add('test.Count', r, {}, { name: 'after' });
  const y = b.add('test.Scale', b.add('test.Scale', c), {}, { name: 'final' });
  return b.build({ y });
}

describeEachBackend('executor', () => {
  it('does not compute retired rows and returns outputs in input order', async () => {
    const model = createModel(runtime, dynamicGraph());
    const x = tf.tensor2d([
      [1, 1],
      [-1, 2],
      [2, 3],
      [-2, 4],
      [3, 5],
    ]);
    seen.length = 0;
    await expectNoLeaks(async () => {
      const { outputs, report } = await model.run(x, { options: { 'test.scale': 2 } });
      // Rows 1 and 3 exit (x10); the others go on and are scaled twice by 2.
      await expectClose(outputs.y!, [4, 4, -10, 20, 8, 12, -20, 40, 12, 20]);
      outputs.y!.dispose();
      expect(seen).toEqual([5, 3]);
      const rows = Object.fromEntries(report!.nodes.map((n) => [n.name, n.rows]));
      expect(rows).toMatchObject({ before: 5, exit: 5, after: 3, final: 3 });
      expect(report!.nodes.find((n) => n.name === 'after')!.stats).toEqual({ rows: 3 });
      expect(report!.flops).toBe(2 * (5 + 5 + 3 + 3 + 3));
      expect(report!.fullFlops).toBe(2 * 5 * 5);
      expect(report!.servedBy.y).toEqual(['final', 'exit', 'final', 'exit', 'final']);
    });
    x.dispose();
    model.dispose();
  });

  it('handles every row retiring and no row retiring', async () => {
    const model = createModel(runtime, dynamicGraph());
    const allOut = tf.tensor2d([
      [-1, 1],
      [-2, 2],
    ]);
    const noneOut = tf.tensor2d([
      [1, 1],
      [2, 2],
    ]);
    await expectNoLeaks(async () => {
      const a = await model.run(allOut);
      await expectClose(a.outputs.y!, [-10, 10, -20, 20]);
      expect(a.report!.nodes.find((n) => n.name === 'final')!.rows).toBe(0);
      const b = await model.run(noneOut);
      await expectClose(b.outputs.y!, [1, 1, 2, 2]);
      tf.dispose([a.outputs.y!, b.outputs.y!]);
    });
    tf.dispose([allOut, noneOut]);
    model.dispose();
  });

  it('applies state updates and collects auxiliary losses', async () => {
    const b = new GraphBuilder(runtime);
    const y = b.add('test.Accumulate', b.input('x', 'float32', ['batch', 2]), {}, { name: 'acc' });
    const model = createModel(runtime, b.build({ y }));
    const x = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    await expectNoLeaks(async () => {
      for (let i = 0; i < 2; i++) {
        const { outputs, losses } = await model.run(x);
        expect(losses.map((l) => [l.node, l.name])).toEqual([['acc', 'mean']]);
        await expectClose(losses[0]!.value, 2.5);
        tf.dispose([outputs.y!, ...losses.map((l) => l.value)]);
      }
    });
    await expectClose(model.state.get('acc/total')!, [8, 12]);
    x.dispose();
    model.dispose();
  });

  it('keeps outputs computed before their rows retire', async () => {
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 2]);
    const early = b.add('test.Scale', x, {}, { name: 'early' });
    const y = b.add('test.Scale', b.add('test.Retire', early, {}, { name: 'exit' }), {}, { name: 'final' });
    const model = createModel(runtime, b.build({ early, y }));
    const input = tf.tensor2d([
      [1, 1],
      [-1, 2],
    ]);
    await expectNoLeaks(async () => {
      const { outputs, report } = await model.run(input, { options: { 'test.scale': 3 } });
      // Row 1 leaves at the exit; its 'early' value, computed before, is still returned.
      await expectClose(outputs.early!, [3, 3, -3, 6]);
      await expectClose(outputs.y!, [9, 9, -30, 60]);
      expect(report!.servedBy).toEqual({ early: ['early', 'early'], y: ['final', 'exit'] });
      tf.dispose(Object.values(outputs));
    });
    input.dispose();
    model.dispose();
  });

  it('computes only the requested outputs', async () => {
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 2]);
    const kept = b.add('test.Scale', x, {}, { name: 'kept' });
    const skipped = b.add('test.Count', x, {}, { name: 'skipped' });
    const model = createModel(runtime, b.build({ kept, skipped }));
    const input = tf.tensor2d([[1, 2]]);
    seen.length = 0;
    await expectNoLeaks(async () => {
      const { outputs, report } = await model.run(input, { outputs: ['kept'] });
      expect(Object.keys(outputs)).toEqual(['kept']);
      expect(report!.nodes.map((n) => n.name)).toEqual(['kept']);
      expect(seen).toEqual([]);
      outputs.kept!.dispose();
      const single = await model.predict(input, { output: 'skipped' });
      expect(seen).toEqual([1]);
      single.dispose();
    });
    await expect(model.run(input, { outputs: ['nope'] })).rejects.toThrow(/No graph output 'nope'/);
    input.dispose();
    model.dispose();
  });

  it('rejects bad inputs with a clear error', async () => {
    const model = createModel(runtime, dynamicGraph());
    const wrongShape = tf.zeros([2, 3]);
    const wrongType = tf.zeros([2, 2], 'int32');
    const nan = tf.tensor2d([[Number.NaN, 1]]);
    await expect(model.run(wrongShape)).rejects.toThrow(
      /Input 'x' has shape \[2,3\] but the graph expects \[batch,2\]/,
    );
    await expect(model.run(wrongType)).rejects.toThrow(/is int32 but the graph expects float32/);
    await expect(model.run(nan)).rejects.toThrow(/contains NaN/);
    await expect(model.run({ z: wrongShape })).rejects.toThrow(/Missing input 'x'/);
    tf.dispose([wrongShape, wrongType, nan]);
    model.dispose();
    await expect(model.run(wrongShape)).rejects.toSatisfy((e) => isDynnError(e, 'INVALID_OPTION'));
  });

  it('names NaN inputs by row and element', async () => {
    const model = createModel(runtime, dynamicGraph());
    const nan = tf.tensor2d([
      [1, 2],
      [3, Number.POSITIVE_INFINITY],
    ]);
    await expect(model.run(nan)).rejects.toThrow(
      /^Input 'x' contains NaN or infinite values: Infinity at row 1 \(element \[1, 1\]\)\. .*checkInputs: false/,
    );
    nan.dispose();
    model.dispose();
  });

  it('names inputs that are not tensors and refuses empty batches', async () => {
    const model = createModel(runtime, dynamicGraph());
    const expectInvalid = (promise: Promise<unknown>, message: RegExp) =>
      expect(promise).rejects.toSatisfy(
        (e) => isDynnError(e, 'INVALID_INPUT') && message.test((e as Error).message),
      );
    await expectNoLeaks(async () => {
      await expectInvalid(
        model.run([[1, 2]] as never),
        /^Input 'x' is a JavaScript array, not a tf\.Tensor; wrap it with tf\.tensor\(\.\.\.\)\.$/,
      );
      await expectInvalid(
        model.run({ x: [[1, 2]] } as never),
        /^Input 'x' is a JavaScript array, not a tf\.Tensor/,
      );
      await expectInvalid(
        model.run(new Float32Array([1, 2]) as never),
        /^Input 'x' is a Float32Array, not a tf\.Tensor; wrap it with tf\.tensor\(values, shape\)/,
      );
      await expectInvalid(model.predict(3 as never), /^Input 'x' is a number, not a tf\.Tensor/);
      await expectInvalid(model.run(undefined as never), /^No inputs given/);
      await expectInvalid(model.run({ x: null } as never), /^Missing input 'x'/);
      const empty = tf.zeros([0, 2]);
      await expectInvalid(
        model.run(empty),
        /^Input 'x' is an empty batch \(shape \[0,2\]\): give at least one row/,
      );
      await expectInvalid(model.predict(empty), /empty batch/);
      empty.dispose();
    });
    model.dispose();

    const b = new GraphBuilder(runtime);
    const left = b.input('left', 'float32', ['batch', 2]);
    const right = b.input('right', 'float32', ['batch', 2]);
    const two = createModel(
      runtime,
      b.build({ y: b.add('test.Scale', left), z: b.add('test.Scale', right) }),
    );
    const t = tf.ones([1, 2]);
    await expectInvalid(
      two.run([t, t] as never),
      /^The inputs are a JavaScript array of tensors; pass them by name: \{ left: \.\.\., right: \.\.\. \}/,
    );
    await expectInvalid(
      two.run({ left: t, right: [[1, 2]] } as never),
      /^Input 'right' is a JavaScript array/,
    );
    await expectInvalid(two.run({ left: t, rigth: t }), /^Missing input 'right'.*named left, rigth/);
    t.dispose();
    two.dispose();
  });
});

it('lets nodes share one tensor by name', async () => {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 2]);
  const y = b.add('test.SharedBias', b.add('test.SharedBias', x, { key: 'head/bias' }), { key: 'head/bias' });
  const graph = b.build({ y });
  expect(graph.params.map((p) => p.name)).toEqual(['head/bias']);
  const model = createModel(runtime, graph);
  model.params.get('head/bias')!.assign(tf.tensor1d([1, 10]));
  const input = tf.tensor2d([[0, 0]]);
  const out = await model.predict(input);
  await expectClose(out, [2, 20]);
  tf.dispose([input, out]);
  model.dispose();
});

it('tells ops in training which inputs need gradients', () => {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 2]);
  const before = b.add('test.Probe', x);
  const biased = b.add('test.SharedBias', before, { key: 'bias' });
  const y = b.add('test.Probe', biased);
  const model = createModel(runtime, b.build({ y }));
  const input = tf.ones([1, 2]);
  gradientFlags.length = 0;
  tf.tidy(() => {
    forwardForTraining(model, new Map([['x', input]]), {}, 0);
  });
  // Data before the first parameter needs no gradient; what the bias influences does.
  expect(gradientFlags).toEqual([[false], [true]]);
  gradientFlags.length = 0;
  tf.tidy(() => {
    forwardForTraining(model, new Map([['x', input]]), {}, 0, { trainable: new Set() });
  });
  expect(gradientFlags).toEqual([[false], [false]]);
  gradientFlags.length = 0;
  tf.tidy(() => {
    forwardForTraining(model, new Map([['x', input]]), {}, 0, { trainable: new Set(), inputGradients: true });
  });
  expect(gradientFlags).toEqual([[true], [true]]);
  input.dispose();
  model.dispose();
});

it('names the package to install for an unknown op', () => {
  const bare = createRuntime();
  const graph = dynamicGraph();
  expect(() => createModel(bare, graph)).toThrow(
    /No plugin provides op 'test.Count' \(node 'before'\)\. Install the plugin package that provides domain 'test'/,
  );
  const newer = { ...graph, opsets: { ...graph.opsets, test: 2 } };
  expect(() => createModel(runtime, newer)).toThrow(
    /needs opset test v2 \(for test.Count, test.Retire, test.Scale\), but test-plugin provides v1\. Upgrade test-plugin/,
  );
});
