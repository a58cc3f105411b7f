// Small models the tests of this package share. Not exported from the package.
import { createModel, createRuntime, type Graph, GraphBuilder, type Model, runPass } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import type { InsertExitsOptions } from './insert-exits.js';
import { earlyExit } from './plugin.js';

/** A runtime with the early-exit plugin. */
export const runtime = createRuntime({ plugins: [earlyExit()] });

/** `graph` with exits inserted by the pass `early-exit.insert-exits` of {@link runtime}. */
export function graphWithExits(graph: Graph, options: InsertExitsOptions): Graph {
  return runPass(runtime, 'early-exit.insert-exits', graph, options).graph;
}

/** Features (and classes) of {@link chainGraph}. */
export const CLASSES = 3;

/** A chain of four 3-unit linear Dense layers, `b1`..`b4`; `b4` writes the output `logits`. */
export function chainGraph(): Graph {
  const b = new GraphBuilder(runtime);
  let h = b.input('x', 'float32', ['batch', CLASSES]);
  for (const name of ['b1', 'b2', 'b3']) h = b.add('core.Dense', h, { units: CLASSES }, { name });
  const logits = b.add('core.Dense', h, { units: CLASSES }, { name: 'b4' });
  return b.build({ logits });
}

/**
 * Exit kernels of {@link handModel}: exit k computes `x @ EXIT_KERNELS[k]`. Exit 1 flips the sign
 * of class 2, so exits 0 and 1 disagree on rows whose largest feature is the last.
 */
export const EXIT_KERNELS = [
  [1, 0, 0, 0, 1, 0, 0, 0, 1],
  [2, 0, 0, 0, 2, 0, 0, 0, -2],
  [3, 0, 0, 0, 3, 0, 0, 0, 3],
];

/** Halting kernel of exit k: `sigmoid(x @ HALT_KERNELS[k] + HALT_BIAS)` is sure when feature k is large. */
export const HALT_KERNELS = [
  [10, 0, 0],
  [0, 10, 0],
  [0, 0, 10],
];
/** Bias of every halting head of {@link handModel}. */
export const HALT_BIAS = -5;

/**
 * Rows whose scores at every exit of {@link handModel} lie well away from the thresholds the tests
 * use (maxProb 0.5-0.99, entropy 0.1-0.8, halting 0.1-0.9), so every backend decides alike.
 */
export const ROWS = [
  [5, 0, 0],
  [1.5, 0, 0],
  [0.1, 0.2, 0],
  [0, 0, 6],
  [0, 1.6, 0],
  [0.3, 0.2, 0.1],
  [0, 0.2, 0.9],
];

/**
 * {@link chainGraph} with exits after `b1`, `b2` and `b3` (logits `exit0`..`exit2`), every
 * backbone layer the identity (so `logits` = x) and the exit kernels above: each row's logits at
 * each exit are known in closed form.
 */
export function handModel(options: { halting?: boolean } = {}): Model {
  const graph = graphWithExits(chainGraph(), { at: ['b1', 'b2', 'b3'], halting: options.halting ?? false });
  const model = createModel(runtime, graph);
  const identity = tf.eye(CLASSES);
  for (const name of ['b1', 'b2', 'b3', 'b4']) model.params.get(`${name}/kernel`)!.assign(identity);
  identity.dispose();
  EXIT_KERNELS.forEach((kernel, k) => {
    const values = tf.tensor2d(kernel, [CLASSES, CLASSES]);
    model.params.get(`exit${k}/kernel`)!.assign(values);
    values.dispose();
    if (options.halting) {
      const halt = tf.tensor2d(HALT_KERNELS[k]!, [CLASSES, 1]);
      const bias = tf.tensor1d([HALT_BIAS]);
      model.params.get(`exit${k}/haltKernel`)!.assign(halt);
      model.params.get(`exit${k}/haltBias`)!.assign(bias);
      tf.dispose([halt, bias]);
    }
  });
  return model;
}

/** Row `x` times a row-major 3x3 kernel. */
export function times(x: readonly number[], kernel: readonly number[]): number[] {
  return [0, 1, 2].map((j) => x.reduce((sum, v, i) => sum + v * kernel[i * CLASSES + j]!, 0));
}

/** Softmax of a row (float64). */
export function softmax(logits: readonly number[]): number[] {
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** Index of the largest value. */
export function argMax(values: readonly number[]): number {
  return values.indexOf(Math.max(...values));
}

/** Vocabulary, window length and width of {@link sequenceGraph}. */
export const SEQUENCE = { vocab: 5, time: 4, width: 4 } as const;

/**
 * A tiny causal language model: token ids `[batch, 4]` over 5 symbols, embedding and position
 * embedding (`pos`), an attention block `block1`, two residual MLP blocks `block2` and `block3`,
 * a final layer norm `norm` and the output head `head`: logits for every position, `[batch, 4, 5]`.
 */
export function sequenceGraph(): Graph {
  const { vocab, time, width } = SEQUENCE;
  const b = new GraphBuilder(runtime);
  const ids = b.input('tokens', 'int32', ['batch', time]);
  const embedded = b.add('core.Embedding', ids, { inputDim: vocab, outputDim: width }, { name: 'embed' });
  let h = b.add('core.PositionEmbedding', embedded, { maxLength: time }, { name: 'pos' });
  const attended = b.add(
    'core.MultiHeadAttention',
    [h, h],
    { numHeads: 2, keyDim: 2, causal: true },
    { name: 'attn' },
  );
  h = b.add('core.Add', [h, attended], {}, { name: 'block1' });
  for (const k of [2, 3]) {
    const mlp = b.add('core.Dense', h, { units: width, activation: 'relu' }, { name: `mlp${k}` });
    h = b.add('core.Add', [h, mlp], {}, { name: `block${k}` });
  }
  const normalised = b.add('core.LayerNorm', h, {}, { name: 'norm' });
  return b.build({ logits: b.add('core.Dense', normalised, { units: vocab }, { name: 'head' }) });
}

/** {@link sequenceGraph} with exits after `block1` and `block2` sharing its norm and output head. */
export function sequenceExitsGraph(): Graph {
  return graphWithExits(sequenceGraph(), {
    at: ['block1', 'block2'],
    head: 'shared',
    sharedHead: 'head',
    sharedNorm: 'norm',
  });
}
