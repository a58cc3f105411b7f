import { createModel, createRng, createRuntime, type Model, type Rng, Trainer, useBackend } from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import { sparseAttention } from '@dynn/sparse-attention';
import * as tf from '@tensorflow/tfjs-core';
import { progressBar } from '../progress.js';
import { markdownTable } from '../report-files.js';
import { spreadOf } from '../spread.js';
// Every Austen bench windows and counts bits the same way.
import { bitsOf, spacedTargets, trainingWindows } from './bench-early-exit-text.js';
import {
  ATTENTION_ARMS,
  type AttentionArm,
  type SparseTransformerConfig,
  sparseTransformerGraph,
} from './sparse-attention-models.js';

/** Model, training and measurement options shared by both quality runs. */
interface QualityTraining {
  /** Seeds of the weights and the training data; every arm trains once per seed (default 1, 2, 3). */
  seeds?: readonly number[];
  /** Training steps per arm and seed. */
  steps?: number;
  /** Sequences per training step. */
  batchSize?: number;
  /** Peak learning rate of Adam (linear warm-up over 5% of the steps, then cosine decay to 0). */
  learningRate?: number;
  /** Width of the residual stream. */
  width?: number;
  /** Transformer blocks. */
  layers?: number;
  /** Attention heads (the routing arm routes in half of them). */
  heads?: number;
  /** Positions a local head sees on each side it looks. */
  window?: number;
  /** Keys per block of the local heads' plan. */
  blockSize?: number;
  /** Routing heads' clusters. */
  clusters?: number;
  /** Routing heads' tokens per window. */
  routingWindow?: number;
  /** Draw a progress bar (default true). */
  progress?: boolean;
}

/** Options of the Austen part of `dynn bench sparse-attention`. */
export interface SparseAttentionTextOptions extends QualityTraining {
  /** Characters per window (default 1,024). */
  context?: number;
  /** Held-out windows of the last 5% of the text the bits per character are measured on, every position of each (default 16). */
  testWindows?: number;
}

/** Options of the long-range retrieval part of `dynn bench sparse-attention`. */
export interface SparseAttentionRetrievalOptions extends QualityTraining {
  /** Sequence length (default 2,048). */
  length?: number;
  /** Distinct filler tokens (default 16). */
  fillers?: number;
  /** Distinct values, the answer's classes (default 8: chance 1/8). */
  values?: number;
  /** The key (marker then value) starts in the first `early` positions (default length / 8). */
  early?: number;
  /** Test sequences measured per seed (default 256). */
  testSequences?: number;
}

/**
 * The Austen part's defaults: 643 s on wasm on two shared cores (measured; full attention's steps
 * are 85% of it). At this budget every arm is still near the bigram plateau (about 3.6 bits).
 */
export const DEFAULT_SPARSE_ATTENTION_TEXT: Required<SparseAttentionTextOptions> = {
  seeds: [1, 2, 3],
  context: 1024,
  // Dense attention over 1,024 positions dominates the step: a small model trains enough steps in budget.
  width: 32,
  layers: 2,
  heads: 2,
  window: 64,
  blockSize: 64,
  clusters: 8,
  routingWindow: 64,
  steps: 240,
  batchSize: 1,
  learningRate: 3e-3,
  testWindows: 16,
  progress: true,
};

/** The retrieval part's defaults: 533 s on wasm on two shared cores (measured). */
export const DEFAULT_SPARSE_ATTENTION_RETRIEVAL: Required<SparseAttentionRetrievalOptions> = {
  seeds: [1, 2, 3],
  length: 2048,
  fillers: 16,
  values: 8,
  early: 256,
  width: 32,
  layers: 2,
  heads: 2,
  // Two layers of +-8 reach 16 positions: the local arm can never see the key from the end.
  window: 8,
  blockSize: 16,
  // About 128 tokens per cluster, as many as a window holds: the last token sees its whole cluster.
  clusters: 16,
  routingWindow: 128,
  steps: 120,
  batchSize: 4,
  learningRate: 3e-3,
  testSequences: 256,
  progress: true,
};

/** `--quick` for the Austen part: a smoke run of a few seconds, not a measurement to quote. */
export const QUICK_SPARSE_ATTENTION_TEXT: SparseAttentionTextOptions = {
  seeds: [1, 2],
  context: 64,
  width: 16,
  window: 16,
  blockSize: 16,
  clusters: 2,
  routingWindow: 16,
  steps: 3,
  testWindows: 2,
};

/** `--quick` for the retrieval part: a smoke run of a few seconds, not a measurement to quote. */
export const QUICK_SPARSE_ATTENTION_RETRIEVAL: SparseAttentionRetrievalOptions = {
  seeds: [1, 2],
  length: 64,
  early: 8,
  width: 16,
  window: 4,
  blockSize: 8,
  clusters: 2,
  routingWindow: 16,
  steps: 3,
  batchSize: 2,
  testSequences: 8,
};

/** One arm of the Austen part over the seeds. */
export interface TextArmResult {
  arm: AttentionArm;
  /** Mean bits per held-out character over the seeds. */
  bpc: number;
  /** Sample standard deviation of `bpc` over the seeds. */
  bpc_std: number;
  /** Bits per character of each seed, in seed order. */
  bpc_per_seed: number[];
  /** Median milliseconds per training step, over every step of every seed. */
  ms_per_step: number;
  /** Trainable parameters. */
  params: number;
}

/** The Austen part: full, local and local + routing attention in the same character model. */
export interface SparseAttentionTextResult {
  arms: TextArmResult[];
  /** Local + routing's mean bits per character at most local-only's and within 2% of full attention's. */
  goal: { met: boolean; routing_le_local: boolean; routing_vs_full: number; within_2pct_of_full: boolean };
  config: Required<Omit<SparseAttentionTextOptions, 'progress'>> & { vocab: number; train_chars: number };
  /** Wall-clock seconds of the whole part. */
  seconds: number;
}

/** One arm of the retrieval part over the seeds. */
export interface RetrievalArmResult {
  arm: 'local' | 'routing';
  /** Mean test accuracy over the seeds. */
  accuracy: number;
  /** Sample standard deviation of `accuracy` over the seeds. */
  accuracy_std: number;
  /** Test accuracy of each seed, in seed order. */
  accuracy_per_seed: number[];
  /** Accuracy of guessing: 1 / values. */
  chance: number;
  /** Median milliseconds per training step. */
  ms_per_step: number;
}

/** The retrieval part: can the last position copy a value from the start of the sequence? */
export interface SparseAttentionRetrievalResult {
  arms: RetrievalArmResult[];
  /**
   * Local-only near chance (below twice chance; its receptive field cannot reach the key) and
   * local + routing at 90% or more.
   */
  goal: { met: boolean; local_near_chance: boolean; routing_at_least_90: boolean };
  config: Required<Omit<SparseAttentionRetrievalOptions, 'progress'>>;
  /** Wall-clock seconds of the whole part. */
  seconds: number;
}

/** A batch of the retrieval task, and where its keys are. */
export interface RetrievalBatch {
  /** Tokens `[rows, length]`, row-major. */
  tokens: Int32Array;
  /** The value each row's last position must name (a token id). */
  answers: Int32Array;
  /** Position of each row's early marker; its value follows it. */
  keyPositions: Int32Array;
}

/**
 * Sequences of the retrieval task. Tokens `0 .. fillers - 1` are filler, drawn uniformly;
 * `fillers` is the marker; the `values` tokens after it are values. Each row holds the marker at a
 * random position before `early - 1` followed by a random value, and the marker again at the last
 * position: the answer is that value. Nothing else is a marker or a value, so the answer is
 * determined by the row.
 */
export function retrievalBatch(
  rng: Rng,
  rows: number,
  spec: { length: number; fillers: number; values: number; early: number },
): RetrievalBatch {
  const { length, fillers, values, early } = spec;
  const tokens = new Int32Array(rows * length);
  const answers = new Int32Array(rows);
  const keyPositions = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = r * length;
    for (let t = 0; t < length; t++) tokens[row + t] = rng.int(fillers);
    const key = rng.int(early - 1);
    const value = fillers + 1 + rng.int(values);
    tokens[row + key] = fillers;
    tokens[row + key + 1] = value;
    tokens[row + length - 1] = fillers;
    answers[r] = value;
    keyPositions[r] = key;
  }
  return { tokens, answers, keyPositions };
}

/** The median of `values`. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Trains `model` with Adam (gradients clipped to norm 1, linear warm-up over 5% of the steps then
 * cosine decay) on `batchAt(step)` (the caller's tensors, disposed here). Returns each step's
 * milliseconds.
 */
async function train(
  model: Model,
  training: { steps: number; learningRate: number; seed: number },
  batchAt: () => { x: tf.Tensor; y: tf.Tensor },
  onStep: (loss: number) => void,
): Promise<number[]> {
  const { steps, learningRate } = training;
  const optimizer = tf.train.adam(learningRate);
  const trainer = new Trainer(model, { optimizer, clipNorm: 1 });
  const warmup = Math.max(1, Math.round(steps * 0.05));
  const ms: number[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const warm = Math.min(1, (step + 1) / warmup);
      trainer.setLearningRate(learningRate * warm * 0.5 * (1 + Math.cos((Math.PI * step) / steps)));
      const { x, y } = batchAt();
      const started = performance.now();
      try {
        // The step reads its loss back, so it has finished when timed.
        const { loss } = await trainer.step(x, y, training.seed * 1_000_003 + step);
        ms.push(performance.now() - started);
        onStep(loss);
      } finally {
        tf.dispose([x, y]);
      }
      // Let the progress bar redraw (readbacks on wasm resolve as microtasks).
      if (step % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  } finally {
    trainer.dispose();
    optimizer.dispose();
  }
  return ms;
}

/** A progress bar over `total` steps whose status is a smoothed training loss. */
function lossBar(label: string, enabled: boolean, total: number) {
  const bar = progressBar(label, enabled);
  let smoothed = Number.NaN;
  bar.start(total, 0, { status: '' });
  return {
    reset: () => {
      smoothed = Number.NaN;
    },
    step: (what: string) => (loss: number) => {
      smoothed = Number.isNaN(smoothed) ? loss : 0.95 * smoothed + 0.05 * loss;
      bar.increment(1, { status: `${what} loss ${smoothed.toFixed(3)}` });
    },
    stop: () => bar.stop(),
  };
}

/**
 * The Austen part on wasm: the same causal character transformer (learned positions) with full
 * attention (`core.MultiHeadAttention`), a causal sliding window in every head (`local`), or the
 * window in half the heads and causal routing heads in the other half (`routing`), trained per
 * seed in turn on the same random windows of the first 90% of the text, then measured in bits per
 * character at every position of held-out windows from the last 5%, and in median milliseconds per
 * training step.
 */
export async function runSparseAttentionText(
  options: SparseAttentionTextOptions = {},
  log: (line: string) => void = () => {},
): Promise<SparseAttentionTextResult> {
  const started = performance.now();
  await useBackend('wasm');
  const o = { ...DEFAULT_SPARSE_ATTENTION_TEXT, ...options };
  const austen = await loadAusten();
  const ids = austen.ids;
  const vocab = austen.vocab.length;
  const trainEnd = Math.floor(ids.length * 0.9);
  const testStart = Math.floor(ids.length * 0.95);
  // Windows ending before evenly spaced targets, every position supervised: starts are target - context.
  const testStarts = spacedTargets(testStart, ids.length - 1, o.testWindows, o.context).map(
    (t) => t - o.context,
  );
  const config: SparseTransformerConfig = {
    vocab,
    context: o.context,
    width: o.width,
    layers: o.layers,
    heads: o.heads,
    causal: true,
    window: o.window,
    blockSize: o.blockSize,
    clusters: o.clusters,
    routingWindow: o.routingWindow,
    positions: true,
  };
  log(
    `Austen: ${trainEnd.toLocaleString('en-US')} training characters, ${o.testWindows} test windows of ${o.context}; ` +
      `${o.steps} steps of ${o.batchSize} x ${o.context} per arm and seed`,
  );
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const bpc = new Map<AttentionArm, number[]>(ATTENTION_ARMS.map((a) => [a, []]));
  const ms = new Map<AttentionArm, number[]>(ATTENTION_ARMS.map((a) => [a, []]));
  const params = new Map<AttentionArm, number>();
  const bar = lossBar('austen', o.progress, o.seeds.length * ATTENTION_ARMS.length * o.steps);
  try {
    for (const seed of o.seeds) {
      for (const arm of ATTENTION_ARMS) {
        const model = createModel(runtime, sparseTransformerGraph(runtime, config, arm), { seed });
        params.set(arm, model.paramCount);
        try {
          // The same windows for every arm of a seed.
          const rng = createRng(seed);
          bar.reset();
          const times = await train(
            model,
            { steps: o.steps, learningRate: o.learningRate, seed },
            () =>
              trainingWindows(
                ids,
                Array.from({ length: o.batchSize }, () => rng.int(trainEnd - o.context - 1)),
                o.context,
              ),
            bar.step(`seed ${seed} ${arm}`),
          );
          ms.get(arm)!.push(...times);
          let bits = 0;
          for (const start of testStarts) {
            const { x, y } = trainingWindows(ids, [start], o.context);
            const { outputs } = await model.run(x, { report: false });
            const logits = tf.reshape(outputs.logits!, [o.context, vocab]);
            const labels = tf.reshape(y, [o.context]);
            bits += (await bitsOf(logits, labels)).bits;
            tf.dispose([x, y, logits, labels, ...Object.values(outputs)]);
          }
          const value = bits / (testStarts.length * o.context);
          bpc.get(arm)!.push(value);
          log(`seed ${seed} ${arm}: ${value.toFixed(3)} bits/char, ${median(times).toFixed(0)} ms/step`);
        } finally {
          model.dispose();
        }
      }
    }
  } finally {
    bar.stop();
  }
  const arms = ATTENTION_ARMS.map((arm): TextArmResult => {
    const { mean, std } = spreadOf(bpc.get(arm)!);
    return {
      arm,
      bpc: mean,
      bpc_std: std,
      bpc_per_seed: bpc.get(arm)!,
      ms_per_step: median(ms.get(arm)!),
      params: params.get(arm)!,
    };
  });
  const mean = (arm: AttentionArm) => arms.find((a) => a.arm === arm)!.bpc;
  const routingVsFull = mean('routing') / mean('full');
  const routingLeLocal = mean('routing') <= mean('local');
  const within = routingVsFull <= 1.02;
  const { progress: _, ...rest } = o;
  return {
    arms,
    goal: {
      met: routingLeLocal && within,
      routing_le_local: routingLeLocal,
      routing_vs_full: routingVsFull,
      within_2pct_of_full: within,
    },
    config: { ...rest, vocab, train_chars: trainEnd },
    seconds: (performance.now() - started) / 1000,
  };
}

/** Fraction of rows of `batch` whose answer `model` names (arg-max at the last position). */
async function retrievalAccuracy(model: Model, batch: RetrievalBatch, length: number): Promise<number> {
  const rows = batch.answers.length;
  let correct = 0;
  for (let start = 0; start < rows; start += 32) {
    const count = Math.min(32, rows - start);
    const x = tf.tensor2d(
      batch.tokens.subarray(start * length, (start + count) * length),
      [count, length],
      'int32',
    );
    const { outputs } = await model.run(x, { report: false });
    const predicted = tf.argMax(outputs.logits!, -1);
    const guesses = await predicted.data();
    tf.dispose([x, predicted, ...Object.values(outputs)]);
    for (let i = 0; i < count; i++) if (guesses[i] === batch.answers[start + i]) correct++;
  }
  return correct / rows;
}

/**
 * The retrieval part on wasm: a bidirectional encoder without position embeddings (two markers
 * are the same vector wherever they are) reads out at the last position, which must name the value
 * that followed the marker near the start ({@link retrievalBatch}). `local` has a window of
 * `window` on each side in every head, so `layers x window` positions are all the end can ever see;
 * `routing` has that window in half the heads and routing heads in the other half. The routing is
 * causal although the encoder is not: the answer is read at the last position, which sees every
 * earlier token of its cluster's last two windows under causal routing, and nearest-centroid
 * assignment routes every token (balanced top-w may leave a rare token, such as the one marker,
 * in no cluster). Trained per seed in turn on the same fresh sequences, measured on held-out ones.
 */
export async function runSparseAttentionRetrieval(
  options: SparseAttentionRetrievalOptions = {},
  log: (line: string) => void = () => {},
): Promise<SparseAttentionRetrievalResult> {
  const started = performance.now();
  await useBackend('wasm');
  const o = { ...DEFAULT_SPARSE_ATTENTION_RETRIEVAL, ...options };
  const spec = { length: o.length, fillers: o.fillers, values: o.values, early: o.early };
  const config: SparseTransformerConfig = {
    vocab: o.fillers + 1 + o.values,
    context: o.length,
    width: o.width,
    layers: o.layers,
    heads: o.heads,
    causal: false,
    window: o.window,
    blockSize: o.blockSize,
    clusters: o.clusters,
    routingWindow: o.routingWindow,
    routingCausal: true,
    positions: false,
  };
  log(
    `retrieval: ${o.length} tokens, key in the first ${o.early}, local reach ${o.layers * o.window}; ` +
      `${o.steps} steps of ${o.batchSize} sequences per arm and seed`,
  );
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const armNames = ['local', 'routing'] as const;
  const accuracy = new Map<AttentionArm, number[]>(armNames.map((a) => [a, []]));
  const ms = new Map<AttentionArm, number[]>(armNames.map((a) => [a, []]));
  const bar = lossBar('retrieval', o.progress, o.seeds.length * armNames.length * o.steps);
  try {
    for (const seed of o.seeds) {
      // Test sequences from a stream apart from every seed's training stream.
      const test = retrievalBatch(createRng(seed + 1_000_000), o.testSequences, spec);
      for (const arm of armNames) {
        const model = createModel(runtime, sparseTransformerGraph(runtime, config, arm), { seed });
        try {
          const rng = createRng(seed);
          bar.reset();
          const times = await train(
            model,
            { steps: o.steps, learningRate: o.learningRate, seed },
            () => {
              const batch = retrievalBatch(rng, o.batchSize, spec);
              return {
                x: tf.tensor2d(batch.tokens, [o.batchSize, o.length], 'int32'),
                y: tf.tensor1d(batch.answers, 'int32'),
              };
            },
            bar.step(`seed ${seed} ${arm}`),
          );
          ms.get(arm)!.push(...times);
          const value = await retrievalAccuracy(model, test, o.length);
          accuracy.get(arm)!.push(value);
          log(
            `seed ${seed} ${arm}: accuracy ${(100 * value).toFixed(1)}%, ${median(times).toFixed(0)} ms/step`,
          );
        } finally {
          model.dispose();
        }
      }
    }
  } finally {
    bar.stop();
  }
  const chance = 1 / o.values;
  const arms = armNames.map((arm): RetrievalArmResult => {
    const { mean, std } = spreadOf(accuracy.get(arm)!);
    return {
      arm,
      accuracy: mean,
      accuracy_std: std,
      accuracy_per_seed: accuracy.get(arm)!,
      chance,
      ms_per_step: median(ms.get(arm)!),
    };
  });
  const localNear = arms[0]!.accuracy < 2 * chance;
  const routing90 = arms[1]!.accuracy >= 0.9;
  const { progress: _, ...rest } = o;
  return {
    arms,
    goal: { met: localNear && routing90, local_near_chance: localNear, routing_at_least_90: routing90 },
    config: rest,
    seconds: (performance.now() - started) / 1000,
  };
}

/** `mean ± std` with `digits` decimals. */
function meanStd(mean: number, std: number, digits: number): string {
  return `${mean.toFixed(digits)} ± ${std.toFixed(digits)}`;
}

/** The Austen part's table and goal line, for the benchmarks page. */
export function textQualityMarkdown(result: SparseAttentionTextResult): string {
  const c = result.config;
  const label: Record<AttentionArm, string> = { full: 'full', local: 'local', routing: 'local + routing' };
  const table = markdownTable(
    ['attention', 'bits / char (lower is better)', 'per seed', 'ms / training step', 'parameters'],
    result.arms.map((a) => [
      label[a.arm],
      meanStd(a.bpc, a.bpc_std, 3),
      a.bpc_per_seed.map((v) => v.toFixed(3)).join(', '),
      a.ms_per_step.toFixed(0),
      a.params.toLocaleString('en-US'),
    ]),
  );
  const g = result.goal;
  return [
    `Austen character model at n = ${c.context.toLocaleString('en-US')}: d ${c.width}, ${c.layers} blocks of ${c.heads} heads, ` +
      `local window ${c.window} (causal), routing ${c.clusters} clusters, windows of ${c.routingWindow}; ` +
      `${c.steps} steps of ${c.batchSize} x ${c.context} characters per arm and seed (seeds ${c.seeds.join(', ')}), ` +
      `bits per character at every position of ${c.testWindows} held-out windows; mean ± std over the seeds, median ms per step.`,
    '',
    table,
    '',
    `Goal: local + routing <= local-only and within 2% of full: ${g.met ? 'met' : 'not met'} ` +
      `(local + routing ${g.routing_le_local ? '<=' : '>'} local; ${(100 * (g.routing_vs_full - 1)).toFixed(1)}% vs full).`,
  ].join('\n');
}

/** The retrieval part's table and goal line, for the benchmarks page. */
export function retrievalMarkdown(result: SparseAttentionRetrievalResult): string {
  const c = result.config;
  const pct = (v: number) => (100 * v).toFixed(1);
  const table = markdownTable(
    ['attention', 'accuracy %', 'per seed', 'chance %', 'ms / training step'],
    result.arms.map((a) => [
      a.arm === 'routing' ? 'local + routing' : 'local',
      meanStd(100 * a.accuracy, 100 * a.accuracy_std, 1),
      a.accuracy_per_seed.map(pct).join(', '),
      pct(a.chance),
      a.ms_per_step.toFixed(0),
    ]),
  );
  const g = result.goal;
  return [
    `Long-range retrieval at n = ${c.length.toLocaleString('en-US')}: a marker and one of ${c.values} values in the first ` +
      `${c.early} positions, the marker again at the end, which must name the value. Bidirectional encoder without ` +
      `positions, d ${c.width}, ${c.layers} blocks of ${c.heads} heads, local window ±${c.window} (reach ${c.layers * c.window}), ` +
      `causal routing with ${c.clusters} clusters and windows of ${c.routingWindow}; ${c.steps} steps of ${c.batchSize} ` +
      `sequences per arm and seed (seeds ${c.seeds.join(', ')}), ${c.testSequences} test sequences; mean ± std over the seeds.`,
    '',
    table,
    '',
    `Goal: local-only near chance (< 2x chance) and local + routing >= 90%: ${g.met ? 'met' : 'not met'} ` +
      `(local ${g.local_near_chance ? 'near' : 'above'} chance; routing ${g.routing_at_least_90 ? '>=' : '<'} 90%).`,
  ].join('\n');
}
