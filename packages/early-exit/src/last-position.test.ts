import { createModel, type Graph, GraphBuilder, isDynnError, runPass, Trainer } from '@dynn/core';
import { describeEachBackend, expectClose, guardLeaks, seededInts } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { lastPositionModel, staticModel } from './add-exits.js';
import { describeExits } from './exits.js';
import { exitRunOptions } from './options.js';
import {
  chainGraph,
  graphWithExits,
  runtime,
  SEQUENCE,
  sequenceExitsGraph,
  sequenceGraph,
} from './test-models.js';
import { multiExitObjective } from './training.js';

/** `graph` through the pass `early-exit.last-position`. */
const lastPosition = (graph: Graph): Graph => runPass(runtime, 'early-exit.last-position', graph, {}).graph;

/** Asserts two tensors hold exactly the same numbers. */
async function expectIdentical(actual: tf.Tensor, expected: tf.Tensor): Promise<void> {
  expect(actual.shape).toEqual(expected.shape);
  expect(Array.from(await actual.data())).toEqual(Array.from(await expected.data()));
}

/** The last position of per-position values [batch, time, c]: [batch, c]. */
function lastOf(t: tf.Tensor): tf.Tensor {
  const [batch, time, c] = t.shape as [number, number, number];
  return tf.tidy(() => tf.reshape(tf.slice(t, [0, time - 1, 0], [batch, 1, c]), [batch, c]));
}

/** The largest max-softmax probability gap among rows, and a threshold in its middle. */
function splitting(scores: number[]): { threshold: number; gap: number } {
  const sorted = [...scores].sort((a, b) => a - b);
  let best = 0;
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]! - sorted[i - 1]! > sorted[best + 1]! - sorted[best]!) best = i - 1;
  return { threshold: (sorted[best]! + sorted[best + 1]!) / 2, gap: sorted[best + 1]! - sorted[best]! };
}

describeEachBackend('exits on a causal language model', () => {
  guardLeaks();

  it('share the final norm and output head; exits off, the outputs are bit-identical', async () => {
    const backbone = sequenceGraph();
    const graph = sequenceExitsGraph();
    const { vocab, time } = SEQUENCE;
    expect(graph.outputs).toEqual([
      { name: 'logits', dtype: 'float32', shape: ['batch', time, vocab] },
      { name: 'exit0', dtype: 'float32', shape: ['batch', time, vocab] },
      { name: 'exit1', dtype: 'float32', shape: ['batch', time, vocab] },
    ]);
    expect(describeExits(graph).map((e) => e.attrs.positions)).toEqual(['all', 'all']);
    // One output head for all exits: no parameter is added.
    expect(graph.params.map((p) => p.name)).toEqual(backbone.params.map((p) => p.name));
    // The shared norm and head belong to nodes that stay: removing the exits keeps them.
    expect(runPass(runtime, 'early-exit.remove-exits', graph, {}).graph).toEqual(backbone);

    const model = createModel(runtime, graph, { seed: 3 });
    const plain = staticModel(model);
    const tokens = seededInts([3, time], vocab, { seed: 4 });
    const expected = await plain.predict(tokens);
    const { outputs } = await model.run(tokens);
    await expectIdentical(outputs.logits!, expected);
    tf.dispose([expected, ...Object.values(outputs)]);

    // An exit after the last block is the network's own output: the same norm, the same head.
    const atEnd = graphWithExits(backbone, {
      at: ['block3'],
      head: 'shared',
      sharedHead: 'head',
      sharedNorm: 'norm',
    });
    const endModel = createModel(runtime, atEnd, { seed: 3 });
    const end = await endModel.run(tokens);
    await expectClose(end.outputs.exit0!, end.outputs.logits!, { label: 'exit after the last block' });
    tf.dispose([tokens, ...Object.values(end.outputs)]);
    [model, plain, endModel].forEach((m) => {
      m.dispose();
    });
  });

  it('train on every position, the exits moving the one shared head', async () => {
    const graph = sequenceExitsGraph();
    const model = createModel(runtime, graph, { seed: 5 });
    const tokens = seededInts([4, SEQUENCE.time], SEQUENCE.vocab, { seed: 6 });
    const next = seededInts([4, SEQUENCE.time], SEQUENCE.vocab, { seed: 7 });
    const head = Array.from(await model.params.get('head/kernel')!.data());
    const optimizer = tf.train.sgd(0.5);
    const trainer = new Trainer(model, { optimizer, loss: multiExitObjective({ graph }) });
    const { loss } = await trainer.step(tokens, next);
    expect(loss).toBeGreaterThan(0);
    expect(Array.from(await model.params.get('head/kernel')!.data())).not.toEqual(head);
    trainer.dispose();
    optimizer.dispose();
    tf.dispose([tokens, next]);
    model.dispose();
  });

  it('serve the last position with the trained weights unchanged', async () => {
    const graph = sequenceExitsGraph();
    const before = JSON.stringify(graph);
    const serving = lastPosition(graph);
    expect(JSON.stringify(graph)).toBe(before);
    expect(serving.outputs.map((o) => o.shape)).toEqual([
      ['batch', SEQUENCE.vocab],
      ['batch', SEQUENCE.vocab],
      ['batch', SEQUENCE.vocab],
    ]);
    expect(serving.params).toEqual(graph.params);
    expect(describeExits(serving).map((e) => e.attrs.positions)).toEqual(['last', 'last']);
    const timeStep = serving.nodes.find((n) => n.op === 'core.TimeStep')!;
    expect(timeStep.name).toBe('head/last');
    expect(serving.nodes.find((n) => n.name === 'head')!.inputs).toEqual(timeStep.outputs);

    const model = createModel(runtime, graph, { seed: 8 });
    const served = lastPositionModel(model);
    const tokens = seededInts([3, SEQUENCE.time], SEQUENCE.vocab, { seed: 9 });
    const trained = await model.run(tokens);
    const { outputs } = await served.run(tokens);
    for (const name of ['logits', 'exit0', 'exit1']) {
      const last = lastOf(trained.outputs[name]!);
      await expectClose(outputs[name]!, last, { label: name });
      last.dispose();
    }
    // With every exit off the serving model computes what its static network does, bit for bit.
    const plain = staticModel(served);
    const expected = await plain.predict(tokens);
    await expectIdentical(outputs.logits!, expected);
    tf.dispose([tokens, expected, ...Object.values(trained.outputs), ...Object.values(outputs)]);
    [model, served, plain].forEach((m) => {
      m.dispose();
    });
  });

  it('retire the rows they are sure about: later layers compute the others only', async () => {
    const model = createModel(runtime, lastPosition(sequenceExitsGraph()), { seed: 10 });
    // A sharper shared head spreads the exits' confidences, so rows split clearly.
    const kernel = model.params.get('head/kernel')!;
    const sharper = tf.mul(kernel, 6);
    kernel.assign(sharper);
    sharper.dispose();
    const rows = 8;
    const tokens = seededInts([rows, SEQUENCE.time], SEQUENCE.vocab, { seed: 11 });
    const all = await model.run(tokens, { outputs: ['logits', 'exit0'] });
    const probabilities = tf.softmax(all.outputs.exit0!);
    const maxProbs = tf.max(probabilities, -1);
    const scores = Array.from(await maxProbs.data());
    const { threshold, gap } = splitting(scores);
    expect(gap).toBeGreaterThan(0.01);
    const leaving = scores.map((s) => s >= threshold);
    const staying = leaving.filter((l) => !l).length;
    expect(staying).toBeGreaterThan(0);
    expect(staying).toBeLessThan(rows);

    const run = await model.run(tokens, {
      outputs: ['logits'],
      options: exitRunOptions({ criterion: 'maxProb', thresholds: [threshold, 2] }),
    });
    const report = run.report!;
    expect(report.servedBy.logits).toEqual(leaving.map((l) => (l ? 'exit0' : 'head')));
    const rowsOf = (node: string) => report.nodes.find((n) => n.name === node)!.rows;
    for (const node of ['embed', 'pos', 'attn', 'block1', 'exit0']) expect(rowsOf(node), node).toBe(rows);
    for (const node of ['mlp2', 'block2', 'exit1', 'mlp3', 'block3', 'norm', 'head/last', 'head'])
      expect(rowsOf(node), node).toBe(staying);
    expect(report.flops).toBeLessThan(report.fullFlops);
    // Rows that left hold their exit's logits, the others the final output's.
    const expected = tf.tidy(() =>
      tf.where(tf.reshape(tf.tensor1d(leaving, 'bool'), [rows, 1]), all.outputs.exit0!, all.outputs.logits!),
    );
    await expectClose(run.outputs.logits!, expected);
    tf.dispose([
      tokens,
      probabilities,
      maxProbs,
      expected,
      ...Object.values(all.outputs),
      ...Object.values(run.outputs),
    ]);
    model.dispose();
  });

  it('refuse a criterion while they answer for every position', async () => {
    const model = createModel(runtime, sequenceExitsGraph(), { seed: 12 });
    const tokens = seededInts([2, SEQUENCE.time], SEQUENCE.vocab, { seed: 13 });
    let error: unknown;
    try {
      await model.run(tokens, { options: exitRunOptions({ criterion: 'maxProb', thresholds: 0.5 }) });
    } catch (e) {
      error = e;
    }
    expect(isDynnError(error, 'INVALID_OPTION')).toBe(true);
    expect((error as Error).message).toMatch(
      /Exit 'exit0' gives logits for every position.*early-exit.last-position/,
    );
    tokens.dispose();
    model.dispose();
  });
});

it('early-exit.last-position needs exits answering for a per-position output of a Dense head', () => {
  const softmaxHead = (): Graph => {
    const b = new GraphBuilder(runtime);
    const ids = b.input('tokens', 'int32', ['batch', 3]);
    const h = b.add(
      'core.Dense',
      b.add('core.Embedding', ids, { inputDim: 4, outputDim: 2 }),
      { units: 2 },
      { name: 'b1' },
    );
    const logits = b.add('core.Dense', h, { units: 4 }, { name: 'out' });
    return b.build({
      probabilities: b.add('core.Activation', logits, { fn: 'softmax' }, { name: 'softmax' }),
    });
  };
  const cases: [Graph, RegExp][] = [
    [sequenceGraph(), /has no exits/],
    [
      graphWithExits(chainGraph(), { at: ['b1'] }),
      /'logits', which is not a per-position output .* but \[batch, 3\]/,
    ],
    [
      graphWithExits(softmaxHead(), { at: ['b1'] }),
      /comes from node 'softmax' \(core\.Activation\); the head must be a core\.Dense/,
    ],
  ];
  for (const [graph, message] of cases) {
    let error: unknown;
    try {
      lastPosition(graph);
    } catch (e) {
      error = e;
    }
    expect(isDynnError(error, 'INVALID_GRAPH'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(message);
  }
});
