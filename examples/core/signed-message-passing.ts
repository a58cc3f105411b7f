// Message passing with the core's sparse ops on a real trust network: predict whether a trader
// on Bitcoin-OTC (SNAP soc-sign-bitcoinotc) rates another negatively. Node states are gathered
// along the edges (`core.Gather`) and averaged into each receiver (`core.SegmentMean`, its node
// count read from the node states: a data-dependent segment count), next to the mean rating each
// trader received and gave; every op trains on every backend. Messages flow only along ratings
// made before the ones predicted: trained to predict the ratings from 60% to 80% of the time span
// from those before, then scored on the last 20% from all before them, by the F1 of the minority
// (negative) class as EvolveGCN reports edge-sign classification (on its own split, so not
// comparable), against the same model without message passing and a trivial classifier. On this
// split, one round of mean messages does not beat free node embeddings, which already know each
// trader's record: the example shows the ops at work on real data, not a better model.
// CI runs `main()` (examples/core.node.test.ts).
import {
  type BackendName,
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  type Model,
  Trainer,
  useBackend,
} from '@dynn/core';
import { loadBitcoinOtc } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

const DIM = 16;

/** Node embeddings, optionally refined by one round of message passing, and an edge classifier. */
function signedGraph(numNodes: number, messagePassing: boolean): Graph {
  const b = new GraphBuilder(createRuntime());
  const nodes = b.input('nodes', 'int32', ['nodes']);
  const src = b.input('src', 'int32', ['edges']);
  const dst = b.input('dst', 'int32', ['edges']);
  const rating = b.input('rating', 'float32', ['edges', 1]);
  const from = b.input('from', 'int32', ['batch']);
  const to = b.input('to', 'int32', ['batch']);
  const h0 = b.add('core.Embedding', nodes, { inputDim: numNodes, outputDim: DIM }, { name: 'embed' });
  let h = h0;
  if (messagePassing) {
    // #region messages
    const messages = b.add('core.Gather', [h0, src], {}, { name: 'messages' });
    const neighbours = b.add('core.SegmentMean', [messages, dst, h0], {}, { name: 'neighbours' });
    const received = b.add('core.SegmentMean', [rating, dst, h0], {}, { name: 'received' });
    const given = b.add('core.SegmentMean', [rating, src, h0], {}, { name: 'given' });
    const joined = b.add('core.Concat', [h0, neighbours, received, given]);
    h = b.add('core.Concat', [
      h0,
      b.add('core.Dense', joined, { units: 4, activation: 'tanh' }, { name: 'update' }),
    ]);
    // #endregion messages
  }
  const pair = b.add('core.Concat', [b.add('core.Gather', [h, from]), b.add('core.Gather', [h, to])]);
  const hidden = b.add('core.Dense', pair, { units: DIM, activation: 'relu' }, { name: 'edge' });
  return b.build({ logits: b.add('core.Dense', hidden, { units: 2 }, { name: 'sign' }) });
}

/** F1 of class 1 (a negative rating) over predictions and labels. */
function minorityF1(predicted: ArrayLike<number>, labels: ArrayLike<number>): number {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < labels.length; i++) {
    if (predicted[i] === 1 && labels[i] === 1) tp++;
    else if (predicted[i] === 1) fp++;
    else if (labels[i] === 1) fn++;
  }
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
  steps = 150,
) {
  await useBackend(backend);
  const graph = await loadBitcoinOtc();
  const order = Array.from(graph.time.keys()).sort((a, b) => graph.time[a]! - graph.time[b]!);
  const [past, split] = [Math.floor(order.length * 0.6), Math.floor(order.length * 0.8)];
  const pick = (ids: number[]) => ({
    src: Int32Array.from(ids, (e) => graph.src[e]!),
    dst: Int32Array.from(ids, (e) => graph.dst[e]!),
    rating: Float32Array.from(ids, (e) => graph.weight![e]! / 10),
    negative: Int32Array.from(ids, (e) => (graph.weight![e]! < 0 ? 1 : 0)),
  });
  const train = pick(order.slice(past, split));
  const test = pick(order.slice(split));
  /** The structure messages flow along: the ratings made before `end` (no later edge leaks in). */
  const structureBefore = (end: number) => {
    const edges = pick(order.slice(0, end));
    return {
      nodes: tf.range(0, graph.numNodes, 1, 'int32'),
      src: tf.tensor1d(edges.src, 'int32'),
      dst: tf.tensor1d(edges.dst, 'int32'),
      rating: tf.tensor2d(edges.rating, [end, 1]),
    };
  };
  const trainStructure = structureBefore(past);
  const testStructure = structureBefore(split);
  const negatives = train.negative.reduce((a, b) => a + b, 0);
  const count = train.negative.length;
  log(
    `Bitcoin-OTC: ${graph.numNodes} traders; trained on ${count} ratings (${((100 * negatives) / count).toFixed(1)}% negative) given the ${past} before, scored on the ${order.length - split} last`,
  );

  const f1: Record<'messagePassing' | 'embeddingsOnly', number> = { messagePassing: 0, embeddingsOnly: 0 };
  for (const messagePassing of [true, false]) {
    const model: Model = createModel(createRuntime(), signedGraph(graph.numNodes, messagePassing), {
      seed: 1,
    });
    const optimizer = tf.train.adam(1e-2);
    // Negative ratings are rare: weight them up so the classifier does not ignore them.
    const weight = (count - negatives) / negatives;
    const trainer = new Trainer(model, {
      optimizer,
      loss: (outputs, targets) =>
        tf.tidy(() => {
          const y = targets.logits! as tf.Tensor1D;
          const perEdge = tf.losses.softmaxCrossEntropy(
            tf.oneHot(y, 2),
            outputs.logits!,
            undefined,
            undefined,
            tf.Reduction.NONE,
          );
          return tf.mean(tf.mul(perEdge, tf.add(1, tf.mul(tf.cast(y, 'float32'), weight - 1)))) as tf.Scalar;
        }),
    });
    const batch = 2048;
    for (let step = 0; step < steps; step++) {
      const start = (step * batch) % (count - batch);
      const from = tf.tensor1d(train.src.subarray(start, start + batch), 'int32');
      const to = tf.tensor1d(train.dst.subarray(start, start + batch), 'int32');
      const y = tf.tensor1d(train.negative.subarray(start, start + batch), 'int32');
      await trainer.step({ ...trainStructure, from, to }, { logits: y }, step);
      tf.dispose([from, to, y]);
    }
    trainer.dispose();
    optimizer.dispose();
    const from = tf.tensor1d(test.src, 'int32');
    const to = tf.tensor1d(test.dst, 'int32');
    const logits = await model.predict({ ...testStructure, from, to });
    const predicted = tf.argMax(logits, -1);
    const score = minorityF1(await predicted.data(), test.negative);
    tf.dispose([from, to, logits, predicted]);
    model.dispose();
    f1[messagePassing ? 'messagePassing' : 'embeddingsOnly'] = score;
    log(
      `${messagePassing ? 'with message passing' : 'embeddings only     '}: F1 of negative ratings ${score.toFixed(3)}`,
    );
  }
  tf.dispose([...Object.values(trainStructure), ...Object.values(testStructure)]);
  // Calling every rating negative: the F1 a classifier must beat to have learned anything.
  const share = test.negative.reduce((a, b) => a + b, 0) / test.negative.length;
  const allNegative = (2 * share) / (1 + share);
  log(`calling every rating negative: F1 ${allNegative.toFixed(3)}`);
  return { ...f1, allNegative };
}
