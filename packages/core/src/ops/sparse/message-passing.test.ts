import { describeEachBackend, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from '../../builder.js';
import { createModel } from '../../model.js';
import { createRuntime } from '../../runtime.js';
import { Trainer } from '../../train.js';

const NODES = 10;
/** A directed ring both ways plus a few chords: every node receives 2 or 3 messages. */
const EDGES: [number, number][] = [
  ...Array.from({ length: NODES }, (_, i) => [i, (i + 1) % NODES] as [number, number]),
  ...Array.from({ length: NODES }, (_, i) => [(i + 1) % NODES, i] as [number, number]),
  [0, 5],
  [3, 8],
  [7, 2],
];

/**
 * A GCN-style layer through the interpreter, every sparse op on the tape: node features embedded
 * by a Dense, messages gathered by edge source, aggregated per edge target by sum (ScatterAdd
 * onto the node's own features), mean and max (the node count read from the node features, a
 * data-dependent segment count), joined and classified.
 */
function messagePassingGraph() {
  const runtime = createRuntime();
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  const src = b.input('src', 'int32', ['edges']);
  const dst = b.input('dst', 'int32', ['edges']);
  const h = b.add('core.Dense', x, { units: 6, activation: 'tanh' });
  const messages = b.add('core.Gather', [h, src]);
  const summed = b.add('core.ScatterAdd', [h, dst, messages]);
  const mean = b.add('core.SegmentMean', [messages, dst, h]);
  const max = b.add('core.SegmentMax', [messages, dst, h]);
  const joined = b.add('core.Concat', [summed, mean, max]);
  const logits = b.add('core.Dense', joined, { units: 3 });
  expect(b.info(messages).shape).toEqual(['edges', 6]);
  expect(b.info(mean).shape).toEqual(['batch', 6]);
  return { runtime, graph: b.build({ logits }) };
}

describeEachBackend('message passing with the sparse ops', () => {
  guardLeaks();

  it('trains with Trainer: gradients flow through Gather, ScatterAdd and the segment reductions', async () => {
    const { runtime, graph } = messagePassingGraph();
    const model = createModel(runtime, graph, { seed: 3 });
    const x = seededUniform([NODES, 4], { seed: 1, min: -1, max: 1 });
    const src = tf.tensor1d(
      EDGES.map(([s]) => s),
      'int32',
    );
    const dst = tf.tensor1d(
      EDGES.map(([, t]) => t),
      'int32',
    );
    const labels = tf.tensor1d(
      Array.from({ length: NODES }, (_, i) => i % 3),
      'int32',
    );
    const optimizer = tf.train.adam(0.05);
    const trainer = new Trainer(model, { optimizer });
    const losses: number[] = [];
    for (let step = 0; step < 25; step++)
      losses.push((await trainer.step({ x, src, dst }, labels, step)).loss);
    expect(losses.at(-1)!, `losses ${losses}`).toBeLessThan(losses[0]! * 0.7);
    optimizer.dispose();
    tf.dispose([x, src, dst, labels]);
    model.dispose();
  });
});
