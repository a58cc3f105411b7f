import { describeEachBackend, expectClose, expectNoLeaks, routingPlugin, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { decideForTraining, forwardForTraining } from './executor.js';
import type { NodeHook } from './interpreter.js';
import type { ValueInfo } from './ir.js';
import { createModel } from './model.js';
import { defineOp } from './op.js';
import { definePlugin } from './plugin.js';
import { createRuntime } from './runtime.js';
import { Trainer } from './train.js';

const same = (_: unknown, [x]: readonly ValueInfo[]) => [{ shape: x!.shape, dtype: x!.dtype }];

/** Returns one row fewer than it was given: a forward that contradicts its inferShape. */
const dropRow = defineOp({
  type: 'test.DropRow',
  version: 1,
  description: 'Drops the last row, against its own inferShape.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: same,
  forward: (_, [x]) => [tf.slice(x!, 0, x!.shape[0]! - 1)],
  flops: () => 0,
});

/** Casts to int32, against its inferShape (float32). */
const wrongType = defineOp({
  type: 'test.WrongType',
  version: 1,
  description: 'Returns int32 where it promised float32.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: same,
  forward: (_, [x]) => [tf.cast(x!, 'int32')],
  flops: () => 0,
});

/** Reads back inside forward: the old way, now refused. */
const asyncForward = defineOp({
  type: 'test.AsyncForward',
  version: 1,
  description: 'An async forward.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: same,
  // @ts-expect-error a forward must be synchronous: the interpreter refuses a Promise at run time too.
  forward: async (_, [x]) => [tf.clone(x!)],
  flops: () => 0,
});

/** Throws a plain error: the interpreter names the node, in inference and in training. */
const broken = defineOp({
  type: 'test.Broken',
  version: 1,
  description: 'Always fails.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: same,
  forward: () => {
    throw new Error('out of cheese');
  },
  flops: () => 0,
});

/** Adds its loss inside a tidy, which disposes it: the interpreter names the node. */
const tidyLoss = defineOp({
  type: 'test.TidyLoss',
  version: 1,
  description: 'Adds a loss that its own tidy disposes.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: same,
  forward: (ctx, [x]) =>
    tf.tidy(() => {
      ctx.addLoss(tf.mean(x!));
      return [tf.clone(x!)];
    }),
  flops: () => 0,
});

/** Reports data-dependent compute: one FLOP per positive element, 4 bytes per row. */
const positives = defineOp({
  type: 'test.Positives',
  version: 1,
  description: 'Identity that adds the count of positive elements to its FLOPs.',
  attrs: {},
  inputs: { min: 1 },
  inferShape: same,
  async decide(_, [x]) {
    const values = await x!.data();
    return values.filter((v) => v > 0).length;
  },
  forward(ctx, [x]) {
    ctx.addCompute({ flops: (ctx.decision as number | undefined) ?? 0, bytes: 4 * x!.shape[0]! });
    return [tf.clone(x!)];
  },
  flops: () => 0,
});

const runtime = createRuntime({
  plugins: [
    routingPlugin,
    definePlugin({
      name: 'test-plugin',
      domain: 'test',
      opset: 1,
      ops: [dropRow, wrongType, asyncForward, broken, positives, tidyLoss],
    }),
  ],
});

function oneOp(op: string) {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 3]);
  return createModel(runtime, b.build({ y: b.add(op, x, {}, { name: 'suspect' }) }));
}

async function failure(run: () => unknown): Promise<Error & { code?: string }> {
  try {
    await run();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a failure');
}

describeEachBackend('the interpreter', () => {
  it('fails at the node whose forward contradicts its inferShape, naming it', async () => {
    const x = tf.ones([4, 3]);
    for (const [op, pattern] of [
      [
        'test.DropRow',
        /Node 'suspect' \(test\.DropRow\) returned float32\[3, 3\] for output 'y', but its inferShape says float32\[batch=4, 3\]/,
      ],
      ['test.WrongType', /Node 'suspect' \(test\.WrongType\) returned int32\[4, 3\].*float32/],
    ] as const) {
      const model = oneOp(op);
      const before = tf.memory().numTensors;
      const error = await failure(() => model.run(x));
      expect(error.code).toBe('SHAPE_MISMATCH');
      expect(error.message).toMatch(pattern);
      expect(tf.memory().numTensors).toBe(before);
      model.dispose();
    }
    x.dispose();
  });

  it('refuses an async forward and names a failing node in inference and in training', async () => {
    const x = tf.ones([2, 3]);
    const asyncModel = oneOp('test.AsyncForward');
    const error = await failure(() => asyncModel.run(x));
    expect(error.message).toMatch(
      /Node 'suspect' \(test\.AsyncForward\): forward returned a Promise.*decide step/,
    );
    asyncModel.dispose();
    const model = oneOp('test.Broken');
    const inference = await failure(() => model.run(x));
    expect(inference.message).toBe("Node 'suspect' (test.Broken) failed: out of cheese");
    const training = await failure(() => forwardForTraining(model, new Map([['x', x]]), {}, 0));
    expect(isDynnError(training) && training.message).toBe(
      "Node 'suspect' (test.Broken) failed: out of cheese",
    );
    model.dispose();
    const tidy = oneOp('test.TidyLoss');
    const disposed = await failure(() => tidy.run(x));
    expect(disposed.message).toMatch(/Node 'suspect' \(test\.TidyLoss\) handed over a disposed loss 'aux'/);
    tidy.dispose();
    x.dispose();
  });

  it('counts every dimension at its actual size, and data-dependent compute, in inference and training', async () => {
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 'time', 8]);
    const h = b.add('core.Dense', x, { units: 4 }, { name: 'dense' });
    const graph = b.build({ y: b.add('test.Positives', h, {}, { name: 'count' }) });
    const model = createModel(runtime, graph, { seed: 1 });
    const input = seededUniform([2, 100, 8], { seed: 2, min: 0, max: 1 });
    const { outputs, report } = await model.run(input);
    const dense = 2 * 2 * 100 * 8 * 4 + 2 * 100 * 4; // matMul and bias over every position
    expect(report!.nodes[0]).toMatchObject({ name: 'dense', flops: dense, calls: 1 });
    expect(report!.fullFlops).toBe(dense);
    const positive = (await outputs.y!.data()).filter((v) => v > 0).length;
    expect(report!.nodes[1]).toMatchObject({ name: 'count', flops: positive, bytes: 8 });
    expect(report!.flops).toBe(dense + positive);
    expect(model.costs(2, { time: 100 })[0]!.flops).toBe(dense);
    // In training: the same report from a trainer step (the op decides in inference only).
    const trainer = new Trainer(model, { loss: 'meanSquaredError', report: true });
    const step = await trainer.step(input, tf.zerosLike(outputs.y!));
    expect(step.report!.nodes.map((n) => [n.name, n.flops, n.bytes])).toEqual([
      ['dense', dense, 0],
      ['count', 0, 8],
    ]);
    trainer.dispose();
    tf.dispose([input, ...Object.values(outputs)]);
    model.dispose();
  });

  it('calls node hooks before and after every node, in inference and in a training step', async () => {
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 3]);
    const h = b.add('core.Dense', x, { units: 4, activation: 'relu' }, { name: 'hidden' });
    const y = b.add('core.Dense', h, { units: 2 }, { name: 'out' });
    const side = b.add('core.Dense', x, { units: 1 }, { name: 'side' });
    const model = createModel(runtime, b.build({ y, side }), { seed: 3 });
    const seen: string[] = [];
    const hook: NodeHook = {
      beforeNode: (e) => seen.push(`before ${e.path} ${e.rows} ${e.taped}`),
      afterNode: (e) => seen.push(`after ${e.path} [${e.outputs[0]!.shape}] ${e.flops}`),
    };
    const input = tf.ones([5, 3]);
    const { outputs } = await model.run(input, { hooks: [hook], outputs: ['y'], report: false });
    expect(seen).toEqual([
      'before hidden 5 false',
      'after hidden [5,4] 160',
      'before out 5 false',
      'after out [5,2] 90',
    ]);
    seen.length = 0;
    // A training step on output y runs the nodes y needs, under the tape.
    tf.tidy(() => {
      forwardForTraining(model, new Map([['x', input]]), {}, 0, { outputs: ['y'], hooks: [hook] });
    });
    expect(seen.filter((s) => s.startsWith('before'))).toEqual(['before hidden 5 true', 'before out 5 true']);
    tf.dispose([input, ...Object.values(outputs)]);
    model.dispose();
  });
});

/** A router over two small MLP branches. */
function routedGraph() {
  const branch = (units: number) => {
    const s = new GraphBuilder(runtime);
    const x = s.input('x', 'float32', ['batch', 4]);
    const h = s.add('core.Dense', x, { units, activation: 'relu' }, { name: 'hidden' });
    return s.subGraph({ y: s.add('core.Dense', h, { units: 3 }, { name: 'out' }) });
  };
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  return b.build({
    logits: b.add('testing.RouteRows', x, { left: branch(8), right: branch(2) }, { name: 'route' }),
  });
}

describeEachBackend('data-dependent decisions', () => {
  it('route rows by values read back, in inference as by hand', async () => {
    const model = createModel(runtime, routedGraph(), { seed: 7 });
    const x = seededUniform([9, 4], { seed: 8, min: -1, max: 1 });
    await expectNoLeaks(async () => {
      const { outputs, report } = await model.run(x);
      const p = model.params;
      const expected = tf.tidy(() => {
        const gate = tf.sigmoid(tf.add(tf.matMul(x, p.get('route/kernel')!), p.get('route/bias')!));
        const branch = (side: string) =>
          tf.add(
            tf.matMul(
              tf.relu(
                tf.add(
                  tf.matMul(x, p.get(`route/${side}/hidden/kernel`)!),
                  p.get(`route/${side}/hidden/bias`)!,
                ),
              ),
              p.get(`route/${side}/out/kernel`)!,
            ),
            p.get(`route/${side}/out/bias`)!,
          );
        const goesLeft = tf.greater(tf.sub(gate, 0.5), 0);
        return tf.where(
          tf.tile(goesLeft, [1, 3]),
          tf.mul(branch('left'), gate),
          tf.mul(branch('right'), tf.sub(1, gate)),
        );
      });
      await expectClose(outputs.logits!, expected);
      const stats = report!.nodes[0]!.stats as { left: number; right: number };
      expect(stats.left + stats.right).toBe(9);
      expect(stats.left).toBeGreaterThan(0);
      expect(stats.right).toBeGreaterThan(0);
      // Branch nodes computed only their rows.
      expect(report!.nodes.find((n) => n.name === 'route/left/hidden')).toMatchObject({
        rows: stats.left,
        parent: 'route',
      });
      expect(report!.nodes.find((n) => n.name === 'route/right/hidden')).toMatchObject({ rows: stats.right });
      expect(report!.flops).toBeLessThan(report!.fullFlops);
      tf.dispose([expected, ...Object.values(outputs)]);
    });
    x.dispose();
    model.dispose();
  });

  it('train with data-dependent sizes: the decide step, then the taped step', async () => {
    const model = createModel(runtime, routedGraph(), { seed: 7 });
    const x = seededUniform([16, 4], { seed: 9, min: -1, max: 1 });
    const y = tf.tensor1d(
      Array.from({ length: 16 }, (_, i) => i % 3),
      'int32',
    );
    const feeds = new Map([['x', x]]);
    await expectNoLeaks(async () => {
      const decisions = await decideForTraining(model, feeds, {}, 0);
      const route = decisions.get('route') as { left: Int32Array; right: Int32Array };
      expect(route.left.length + route.right.length).toBe(16);
      // Without the decide step the taped step refuses, naming the node.
      expect(() => forwardForTraining(model, feeds, {}, 0)).toThrow(/'route'.*decideForTraining/);
      // Gradients reach the gate and both branches.
      const { grads, value } = tf.variableGrads(
        () =>
          tf.tidy(() => {
            const { outputs } = forwardForTraining(model, feeds, {}, 0, { decisions });
            return tf.losses.softmaxCrossEntropy(tf.oneHot(y, 3), outputs.logits!) as tf.Scalar;
          }),
        [...model.params.values()],
      );
      for (const name of ['route/kernel', 'route/left/out/kernel', 'route/right/hidden/kernel']) {
        const grad = Object.entries(grads).find(([key]) => key.startsWith(`${name}#`))![1];
        const size = tf.tidy(() => tf.sum(tf.abs(grad)));
        expect((await size.data())[0]).toBeGreaterThan(0);
        size.dispose();
      }
      tf.dispose([value, ...Object.values(grads)]);
      const optimizer = tf.train.adam(0.05);
      const trainer = new Trainer(model, { optimizer });
      const losses: number[] = [];
      for (let step = 0; step < 30; step++) losses.push((await trainer.step(x, y, step)).loss);
      expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.8);
      optimizer.dispose();
    });
    tf.dispose([x, y]);
    model.dispose();
  });
});
