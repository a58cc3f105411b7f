import {
  cosineDecay,
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  type Model,
  type Runtime,
  resolveAttrs,
  Trainer,
  useBackend,
} from '@dynn/core';
import { type CharCorpus, loadAusten } from '@dynn/datasets';
import { addSparseAttention, type Pattern, type RoutingAttrs, sparseAttention } from '@dynn/sparse-attention';
import * as tf from '@tensorflow/tfjs-core';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { trainingWindows } from './bench-early-exit-text.js';

/** Options of `dynn demo sparse-attention`. */
export interface DemoSparseAttentionOptions {
  /** Training steps (default 300, about a minute on wasm on two cores). */
  steps?: number;
  /** Windows of {@link DEMO_CONTEXT} characters per step (default 16). */
  batchSize?: number;
  /** Held-out windows bits per character are measured on (default 64). */
  evalWindows?: number;
  /** Characters generated after the prompt (default 64). */
  generate?: number;
  /** Lengths the compute report is read at, against dense attention (default 256, 1,024, 4,096). */
  lengths?: readonly number[];
  /** Folder for the report (default `reports/demo-sparse-attention`). */
  out?: string;
  /** Draw a progress bar (default true). */
  progress?: boolean;
}

/** `--quick`: a smoke-sized run of a few seconds. */
export const QUICK_DEMO_SPARSE_ATTENTION: DemoSparseAttentionOptions = {
  steps: 8,
  batchSize: 4,
  evalWindows: 4,
  generate: 12,
  lengths: [256, 1024],
};

/** Characters per training window. */
export const DEMO_CONTEXT = 128;
/** Width of the residual stream, attention heads and their size, transformer blocks. */
const DEMO_WIDTH = 64;
const DEMO_HEADS = 4;
const DEMO_KEY_DIM = 16;
const DEMO_LAYERS = 2;
const LEARNING_RATE = 3e-3;
/** The prompt the demo continues. */
const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';

/** The pattern heads' pattern: each character sees itself and the 31 characters before it. */
export const DEMO_PATTERN: Pattern = {
  type: 'and',
  of: [{ type: 'causal' }, { type: 'window', before: 31, after: 0 }],
};

/** The routing heads: the last 2 of 4, 4 clusters, causal windows of 16 characters. */
export const DEMO_ROUTING: RoutingAttrs = {
  heads: 2,
  clusters: 4,
  window: 16,
  causal: true,
  decay: 0.99,
  commitment: 1e-4,
};

/**
 * The demo's model: a causal character transformer of {@link DEMO_LAYERS} pre-norm blocks, each a
 * `sparse-attention.SparseAttention` layer (2 heads on a sliding window of 32 characters with
 * ALiBi distances, 2 routing heads) and a relu MLP of twice the width, then a head over the
 * vocabulary. No position embedding: the window heads know distances from ALiBi, so the model
 * runs on any length and decodes in a session without a position limit.
 */
export function sparseCharGraph(runtime: Runtime, vocab: number): Graph {
  const b = new GraphBuilder(runtime);
  const chars = b.input('chars', 'int32', ['batch', 'time']);
  let h = b.add('core.Embedding', chars, { inputDim: vocab, outputDim: DEMO_WIDTH }, { name: 'embed' });
  for (let k = 1; k <= DEMO_LAYERS; k++) {
    const normed = b.add('core.LayerNorm', h, {}, { name: `block${k}/norm1` });
    const attended = addSparseAttention(b, normed, {
      name: `block${k}/attention`,
      numHeads: DEMO_HEADS,
      keyDim: DEMO_KEY_DIM,
      blockSize: 16,
      pattern: DEMO_PATTERN,
      scoreMods: [{ type: 'alibi' }],
      routing: DEMO_ROUTING,
    });
    h = b.add('core.Add', [h, attended], {}, { name: `block${k}/residual1` });
    const normed2 = b.add('core.LayerNorm', h, {}, { name: `block${k}/norm2` });
    const hidden = b.add(
      'core.Dense',
      normed2,
      { units: 2 * DEMO_WIDTH, activation: 'relu' },
      { name: `block${k}/mlp1` },
    );
    const mlp = b.add('core.Dense', hidden, { units: DEMO_WIDTH }, { name: `block${k}/mlp2` });
    h = b.add('core.Add', [h, mlp], {}, { name: `block${k}` });
  }
  h = b.add('core.LayerNorm', h, {}, { name: 'norm' });
  return b.build({ logits: b.add('core.Dense', h, { units: vocab }, { name: 'head' }) });
}

/** FLOPs of core's dense causal `core.MultiHeadAttention` with the demo's heads, for one sequence of `time`. */
export function denseAttentionFlops(runtime: Runtime, time: number): number {
  const dense = runtime.op('core.MultiHeadAttention');
  const attrs = resolveAttrs(dense, { numHeads: DEMO_HEADS, keyDim: DEMO_KEY_DIM, causal: true }, 'dense');
  const shape = [1, time, DEMO_WIDTH];
  return dense.flops(attrs, [shape, shape], [shape]);
}

/** `count` windows of `length` characters of `ids[from, to)` at seeded offsets, with next-character targets. */
function windows(
  ids: ArrayLike<number>,
  from: number,
  to: number,
  count: number,
  length: number,
  seed: number,
) {
  let state = seed;
  const starts = Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return from + (state % (to - from - length - 1));
  });
  return trainingWindows(ids, starts, length);
}

/** Mean cross-entropy in bits per character of the model's next-character logits on `x` against `y`. */
async function bitsPerChar(model: Model, x: tf.Tensor, y: tf.Tensor, vocab: number) {
  const { outputs, report } = await model.run(x);
  const logits = outputs.logits!;
  const nats = tf.tidy(() => tf.mean(tf.losses.softmaxCrossEntropy(tf.oneHot(y, vocab), logits)));
  const bits = (await nats.data())[0]! / Math.LN2;
  tf.dispose([logits, nats]);
  return { bits, report: report! };
}

/** Greedy generation after `prompt`, in a session (one character per run) or recomputing the prefix each step. */
async function generate(model: Model, prompt: readonly number[], count: number, inSession: boolean) {
  const ids = [...prompt];
  const session = inSession ? model.session() : undefined;
  const started = performance.now();
  let fed = ids;
  try {
    for (let k = 0; k < count; k++) {
      const input = tf.tensor2d(fed, [1, fed.length], 'int32');
      const logits = session ? await session.predict(input) : await model.predict(input);
      const next = tf.tidy(() =>
        tf.argMax(tf.reshape(tf.slice(logits, [0, fed.length - 1, 0], [1, 1, -1]), [-1])),
      );
      const id = (await next.data())[0]!;
      tf.dispose([input, logits, next]);
      ids.push(id);
      fed = session ? [id] : ids;
    }
  } finally {
    session?.dispose();
  }
  return { ids, ms: performance.now() - started };
}

/** The compute report of one held-out sequence, against dense attention at the same length. */
export interface DemoSparseAttentionLength {
  /** Characters in the sequence. */
  length: number;
  /** Bits per character of the model on it, every position predicting the next. */
  bitsPerChar: number;
  /** FLOPs the sparse-attention layers computed (their nodes in the compute report, summed). */
  attentionFlops: number;
  /** FLOPs of dense causal attention (`core.MultiHeadAttention`, same heads) in every block. */
  denseAttentionFlops: number;
  /** Tiles the window heads computed, summed over blocks, and the tiles of the whole score matrix. */
  keptTiles: number;
  denseTiles: number;
  /** Query-key pairs the routing heads computed that count, summed over blocks. */
  routingPairs: number;
  /** FLOPs of the whole run. */
  modelFlops: number;
}

/** What the demo measured. */
export interface DemoSparseAttentionResult {
  /** Training steps, windows per step, characters per window, seconds. */
  steps: number;
  batchSize: number;
  context: number;
  trainSeconds: number;
  /** Trainable parameters. */
  params: number;
  /** Bits per character on held-out windows of {@link DEMO_CONTEXT} characters. */
  bitsPerChar: number;
  /** The prompt and what the model generated after it in a session. */
  prompt: string;
  generated: string;
  /** Whether recomputing the whole prefix for every character generated the same text. */
  sameAsRecomputed: boolean;
  /** Milliseconds of the two ways of generating. */
  sessionMs: number;
  recomputeMs: number;
  /** The compute report at each length. */
  lengths: DemoSparseAttentionLength[];
}

/** What {@link runDemoSparseAttention} returns: the result and the folder its report went to. */
export type DemoSparseAttentionRun = DemoSparseAttentionResult & { reportDir: string };

/** The compute report of a run, summed over the sparse-attention nodes. */
function attentionTotals(report: {
  flops: number;
  nodes: readonly { op: string; flops: number; stats: Record<string, unknown> }[];
}) {
  const nodes = report.nodes.filter((n) => n.op === 'sparse-attention.SparseAttention');
  const sum = (key: string) => nodes.reduce((s, n) => s + ((n.stats[key] as number | undefined) ?? 0), 0);
  return {
    attentionFlops: nodes.reduce((s, n) => s + n.flops, 0),
    keptTiles: sum('keptTiles'),
    denseTiles: sum('denseTiles'),
    routingPairs: sum('routingPairs'),
    modelFlops: report.flops,
  };
}

/** The lines `dynn demo sparse-attention` prints. */
export function demoSparseAttentionSummary(run: DemoSparseAttentionRun): string {
  const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
  return [
    `a causal character model (${DEMO_LAYERS} blocks, 2 window + 2 routing heads each, ${run.params.toLocaleString('en-US')} parameters), ` +
      `trained ${run.steps} steps on Austen (${run.trainSeconds.toFixed(0)} s): ${run.bitsPerChar.toFixed(2)} bits per character on held-out text`,
    `generated in a session (KV cache): ${JSON.stringify(run.generated)}`,
    `recomputing the prefix for every character: ${run.sameAsRecomputed ? 'the same text' : 'a DIFFERENT text'} ` +
      `(session ${run.sessionMs.toFixed(0)} ms, recomputing ${run.recomputeMs.toFixed(0)} ms)`,
    'attention FLOPs from the compute report, against dense causal attention at the same length:',
    ...run.lengths.map(
      (l) =>
        `  ${String(l.length).padStart(5)} characters: ${(l.attentionFlops / 1e6).toFixed(1)} MFLOPs vs ${(l.denseAttentionFlops / 1e6).toFixed(1)} dense ` +
        `(${pct(l.attentionFlops / l.denseAttentionFlops)}); ${l.bitsPerChar.toFixed(2)} bits per character`,
    ),
    `report: ${run.reportDir}`,
    '',
  ].join('\n');
}

/**
 * Trains a causal character model with sliding-window and routing attention on Jane Austen's
 * novels on wasm, then: bits per character on held-out text; greedy generation in a session (KV
 * cache) checked against recomputing the whole prefix each step; and, on held-out sequences of
 * each length, the FLOPs its attention layers computed (the compute report) against dense causal
 * attention of the same heads. Writes a markdown report and result.json.
 */
export async function runDemoSparseAttention(
  options: DemoSparseAttentionOptions,
  log: (line: string) => void,
): Promise<DemoSparseAttentionRun> {
  await useBackend('wasm');
  const austen: CharCorpus = await loadAusten();
  const vocab = austen.vocab.length;
  const split = Math.floor(austen.ids.length * 0.9);
  const steps = options.steps ?? 300;
  const batchSize = options.batchSize ?? 16;
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const model = createModel(runtime, sparseCharGraph(runtime, vocab), { seed: 1 });
  try {
    log(
      `training a causal character model with window and routing attention on Austen: ${steps} steps of ` +
        `${batchSize} x ${DEMO_CONTEXT} characters, on ${tf.getBackend()}`,
    );
    const optimizer = tf.train.adam(LEARNING_RATE);
    const trainer = new Trainer(model, { loss: 'sparseCategoricalCrossentropy', optimizer });
    const schedule = cosineDecay(LEARNING_RATE);
    const bar = progressBar('training', options.progress ?? true);
    const started = performance.now();
    let smoothed = Number.NaN;
    try {
      bar.start(steps, 0, { status: '' });
      for (let step = 0; step < steps; step++) {
        trainer.setLearningRate(schedule(step, steps));
        const batch = windows(austen.ids, 0, split, batchSize, DEMO_CONTEXT, step + 1);
        const { loss } = await trainer.step(batch.x, batch.y, step);
        tf.dispose([batch.x, batch.y]);
        const bits = loss / Math.LN2;
        smoothed = Number.isNaN(smoothed) ? bits : 0.95 * smoothed + 0.05 * bits;
        bar.update(step + 1, { status: `${smoothed.toFixed(2)} bits/char` });
      }
    } finally {
      bar.stop();
      trainer.dispose();
      optimizer.dispose();
    }
    const trainSeconds = (performance.now() - started) / 1000;

    const test = windows(austen.ids, split, austen.ids.length, options.evalWindows ?? 64, DEMO_CONTEXT, 7);
    const { bits } = await bitsPerChar(model, test.x, test.y, vocab);
    tf.dispose([test.x, test.y]);

    const prompt = Array.from(austen.encode(PROMPT));
    const count = options.generate ?? 64;
    log(`generating ${count} characters twice: in a session, and recomputing the whole prefix each step`);
    const cached = await generate(model, prompt, count, true);
    const full = await generate(model, prompt, count, false);

    const lengths: DemoSparseAttentionLength[] = [];
    for (const [i, length] of (options.lengths ?? [256, 1024, 4096]).entries()) {
      log(`reading the compute report of one held-out sequence of ${length} characters`);
      const sequence = windows(austen.ids, split, austen.ids.length, 1, length, 11 + i);
      const { bits: lengthBits, report } = await bitsPerChar(model, sequence.x, sequence.y, vocab);
      tf.dispose([sequence.x, sequence.y]);
      lengths.push({
        length,
        bitsPerChar: lengthBits,
        ...attentionTotals(report),
        denseAttentionFlops: DEMO_LAYERS * denseAttentionFlops(runtime, length),
      });
    }

    const result: DemoSparseAttentionResult = {
      steps,
      batchSize,
      context: DEMO_CONTEXT,
      trainSeconds,
      params: model.paramCount,
      bitsPerChar: bits,
      prompt: PROMPT,
      generated: austen.decode(cached.ids.slice(prompt.length)),
      sameAsRecomputed: cached.ids.join(',') === full.ids.join(','),
      sessionMs: cached.ms,
      recomputeMs: full.ms,
      lengths,
    };
    const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
    const table = markdownTable(
      [
        'characters',
        'attention MFLOPs',
        'dense attention MFLOPs',
        'share',
        'window-head tiles (of all)',
        'routing pairs',
        'bits / char',
      ],
      lengths.map((l) => [
        l.length.toLocaleString('en-US'),
        (l.attentionFlops / 1e6).toFixed(1),
        (l.denseAttentionFlops / 1e6).toFixed(1),
        pct(l.attentionFlops / l.denseAttentionFlops),
        `${l.keptTiles.toLocaleString('en-US')} (${l.denseTiles.toLocaleString('en-US')})`,
        l.routingPairs.toLocaleString('en-US'),
        l.bitsPerChar.toFixed(2),
      ]),
    );
    const reportDir = await writeReport(options.out ?? 'reports/demo-sparse-attention', {
      'README.md': [
        '# dynn demo: attention that computes only the pairs a pattern or a router keeps',
        '',
        `A causal character model of ${DEMO_LAYERS} blocks (width ${DEMO_WIDTH}, ${model.paramCount.toLocaleString('en-US')} parameters) whose attention ` +
          'layers are `sparse-attention.SparseAttention`: 2 heads on a sliding window of the last 32 characters (ALiBi distances, ' +
          `blocks of 16), and 2 routing heads (${DEMO_ROUTING.clusters} clusters learned by online k-means, causal windows of ` +
          `${DEMO_ROUTING.window} characters). Trained ${steps} steps of ${batchSize} x ${DEMO_CONTEXT} characters of Jane Austen's novels ` +
          `(${trainSeconds.toFixed(0)} s on ${tf.getBackend()}): ${bits.toFixed(2)} bits per character on held-out windows.`,
        '',
        `Generated greedily after "${PROMPT}" in a session (each layer keeps the keys its window and its clusters can still reach): ` +
          `"${result.generated}". Recomputing the whole prefix for every character generated ` +
          `${result.sameAsRecomputed ? 'the same text' : 'a different text'} (session ${cached.ms.toFixed(0)} ms, recomputing ${full.ms.toFixed(0)} ms).`,
        '',
        "The FLOPs of the attention layers in the compute report of one held-out sequence per length, against core's dense causal " +
          '`core.MultiHeadAttention` with the same heads in every block (projections included in both); the bits per character are the ' +
          `model's on that sequence (it trained on ${DEMO_CONTEXT} characters and has no position embedding).`,
        '',
        table,
        '',
      ].join('\n'),
      'result.json': `${JSON.stringify(result, null, 2)}\n`,
    });
    return { ...result, reportDir };
  } finally {
    model.dispose();
  }
}
