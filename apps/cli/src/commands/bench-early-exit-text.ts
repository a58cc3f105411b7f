import {
  createModel,
  createRng,
  createRuntime,
  type Graph,
  GraphBuilder,
  type Model,
  type RunOptions,
  type Runtime,
  runPass,
  Trainer,
  useBackend,
} from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import {
  type ExitSweep,
  earlyExit,
  exitOutputsOf,
  lastPositionModel,
  multiExitObjective,
  type ParetoPoint,
  pickOperatingPoint,
  runOptionsFor,
  staticModel,
  sweepExits,
} from '@dynn/early-exit';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { batchesOf, MEASURE_BATCH, runEach } from '../exit-runs.js';
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { formatThreshold, markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';

/** The character-level transformer of `dynn bench early-exit-text`. */
export interface CharTransformerConfig {
  /** Distinct characters (classes of the output). */
  vocab: number;
  /** Characters of context each position sees at most (the window length). */
  context: number;
  /** Width of the residual stream. */
  width: number;
  /** Transformer blocks. */
  layers: number;
  /** Attention heads per block (must divide `width`). */
  heads: number;
}

/** Options of `dynn bench early-exit-text`. */
export interface BenchEarlyExitTextOptions {
  /** Transformer blocks (default 4). */
  layers?: number;
  /** Width of the residual stream (default 64). */
  width?: number;
  /** Attention heads (default 2). */
  heads?: number;
  /** Window length: characters of context (default 32). */
  context?: number;
  /** Training steps (default 800). */
  steps?: number;
  /** Windows per training step (default 32). */
  batchSize?: number;
  /** Peak learning rate of Adam (default 6e-3; linear warm-up, then cosine decay). */
  learningRate?: number;
  /** Held-out windows the thresholds are calibrated on (default 1024). */
  calibrationWindows?: number;
  /** Test windows measured (default 2048). */
  testWindows?: number;
  /** Max-softmax thresholds swept (default {@link TEXT_EXIT_THRESHOLDS}). */
  thresholds?: readonly number[];
  /**
   * Compute budgets of the operating points, as fractions of the static network's FLOPs per
   * character on the calibration windows: each is the most accurate point within its budget
   * (default {@link TEXT_FLOP_BUDGETS}).
   */
  flopBudgets?: readonly number[];
  /** Batches of 256 windows timed (default 4). */
  timingBatches?: number;
  /** Untimed runs before timing (default 1). */
  warmup?: number;
  /** Timed runs per case; the median is reported (default 5). */
  repeats?: number;
  /** Show a progress bar while training (default true). */
  progress?: boolean;
  /** Seed of weights and of the training windows (default 1). */
  seed?: number;
  /** Folder for the sweep and the BPC-versus-layers chart (default `reports/early-exit-text`); the CLI adds `result.json`. */
  out?: string;
}

/**
 * Max-softmax thresholds the calibration sweeps: a next-character distribution is rarely sharp,
 * so the grid reaches down to 0.1.
 */
export const TEXT_EXIT_THRESHOLDS = [
  0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99,
] as const;

/** Compute budgets of the three operating points: fractions of the static network's FLOPs per character. */
export const TEXT_FLOP_BUDGETS = [0.75, 0.6, 0.45] as const;

/** The serving network measured one way on the test windows. */
export interface TextRun {
  /** Bits per character: mean -log2 p(true next character) under the distribution that served it. */
  bpc: number;
  /** Fraction of next characters predicted right (arg-max). */
  accuracy: number;
  /** Mean blocks a character's window went through before it was served. */
  mean_layers: number;
  /** FLOPs the compute reports say were executed, per character, in millions. */
  mflops_per_char: number;
  /** Median milliseconds per batch of 256 windows. */
  ms_per_batch: number;
}

/** An operating point of the early-exit network. */
export interface TextOperatingPoint extends TextRun {
  /** Max-softmax threshold (one shared, or one per exit); null when the pick is the network without exits. */
  threshold: number | number[] | null;
  /** The compute budget it was picked for: a fraction of the static network's FLOPs per character on the calibration windows. */
  flop_budget: number;
  /** Test characters served after each block's exit, then by the final output. */
  exit_histogram: number[];
  /** full ms / this point's ms. */
  speedup: number;
}

/** The fields `dynn bench early-exit text --json` adds to the bench envelope. */
export interface BenchEarlyExitTextResult {
  model: CharTransformerConfig & { params: number };
  /**
   * Steps and windows per step; `end_loss_bits` is the smoothed training loss at the end: the
   * mean over the exits and the final output of their cross-entropy, in bits per character.
   */
  training: { steps: number; batch_size: number; seconds: number; end_loss_bits: number };
  /** Characters trained on, calibrated on and measured on (one per window for the last two). */
  counts: { train_chars: number; calibration_windows: number; test_windows: number };
  /** Bits per test character coded with the training split's character frequencies (add-one smoothed): the reference line. */
  unigram_bpc: number;
  /** The static network: every window through every block, no exit head computed. */
  full: TextRun;
  /** The operating points, one per compute budget, from the largest budget to the smallest. */
  operating_points: TextOperatingPoint[];
  /** Every character served at block k's exit (k = 1..layers-1), then the final output. */
  per_layer: { layer: number; bpc: number; accuracy: number }[];
  /** Share of test characters the first block's exit already predicts right (arg-max). */
  layer1_correct_share: number;
}

/** The result with what the docs table also shows. */
export interface BenchEarlyExitTextRun {
  result: BenchEarlyExitTextResult;
  /** The calibration sweep on the held-out windows (plain JSON). */
  sweep: ExitSweep;
  /** Absolute folder the report files were written to. */
  reportDir: string;
}

/** `--quick`: a smoke-sized run of a few seconds (CI), not a measurement to quote. */
export const QUICK_BENCH_EARLY_EXIT_TEXT: BenchEarlyExitTextOptions = {
  layers: 3,
  width: 16,
  heads: 2,
  context: 8,
  steps: 80,
  batchSize: 16,
  learningRate: 1e-2,
  calibrationWindows: 256,
  testWindows: 300,
  // Threshold 0, which every row passes, is the only point within the smallest budget.
  thresholds: [0, 0.5, 0.9],
  flopBudgets: [0.9, 0.7, 0.4],
  timingBatches: 1,
  warmup: 0,
  repeats: 1,
};

/** Name of block `k` (1-based): its second residual add, after which its exit goes. */
function blockName(k: number): string {
  return `block${k}`;
}

/**
 * A small causal character-level transformer trained on every position: ids `[batch, context]`,
 * token and learned position embeddings, `layers` pre-norm blocks (causal multi-head attention
 * and a 4x-wide relu MLP, each added to the residual stream), a final layer norm `norm` and the
 * output head `head`: logits for every position, `[batch, context, vocab]`.
 */
export function charTransformerGraph(runtime: Runtime, config: CharTransformerConfig): Graph {
  const { vocab, context, width, layers, heads } = config;
  const b = new GraphBuilder(runtime);
  const ids = b.input('chars', 'int32', ['batch', context]);
  const embedded = b.add('core.Embedding', ids, { inputDim: vocab, outputDim: width }, { name: 'embed' });
  let h = b.add('core.PositionEmbedding', embedded, { maxLength: context }, { name: 'pos' });
  for (let k = 1; k <= layers; k++) {
    const normed = b.add('core.LayerNorm', h, {}, { name: `${blockName(k)}/norm1` });
    const attended = b.add(
      'core.MultiHeadAttention',
      [normed, normed],
      { numHeads: heads, keyDim: width / heads, causal: true },
      { name: `${blockName(k)}/attn` },
    );
    h = b.add('core.Add', [h, attended], {}, { name: `${blockName(k)}/residual1` });
    const normed2 = b.add('core.LayerNorm', h, {}, { name: `${blockName(k)}/norm2` });
    const hidden = b.add(
      'core.Dense',
      normed2,
      { units: 4 * width, activation: 'relu' },
      { name: `${blockName(k)}/mlp1` },
    );
    const mlp = b.add('core.Dense', hidden, { units: width }, { name: `${blockName(k)}/mlp2` });
    h = b.add('core.Add', [h, mlp], {}, { name: blockName(k) });
  }
  const normed = b.add('core.LayerNorm', h, {}, { name: 'norm' });
  return b.build({ logits: b.add('core.Dense', normed, { units: vocab }, { name: 'head' }) });
}

/**
 * The bench's training graph: {@link charTransformerGraph} with an exit after every block but the
 * last, each exit the network's own final norm and output head (one head for all exits, as
 * LayerSkip does), answering for every position. `runtime` must include the early-exit plugin.
 */
export function charTransformerWithExits(runtime: Runtime, config: CharTransformerConfig): Graph {
  return runPass(runtime, 'early-exit.insert-exits', charTransformerGraph(runtime, config), {
    at: Array.from({ length: config.layers - 1 }, (_, i) => blockName(i + 1)),
    head: 'shared',
    sharedHead: 'head',
    sharedNorm: 'norm',
  }).graph;
}

/** Windows of `context` ids ending just before each of `targets`, with those next characters. */
export function windowsAt(
  ids: ArrayLike<number>,
  targets: readonly number[],
  context: number,
): { x: tf.Tensor2D; y: tf.Tensor1D } {
  const x = new Int32Array(targets.length * context);
  const y = new Int32Array(targets.length);
  targets.forEach((target, i) => {
    for (let t = 0; t < context; t++) x[i * context + t] = ids[target - context + t]!;
    y[i] = ids[target]!;
  });
  return { x: tf.tensor2d(x, [targets.length, context], 'int32'), y: tf.tensor1d(y, 'int32') };
}

/**
 * Training windows starting at `starts`: ids `[batch, context]` and, per position, the next
 * character `[batch, context]` (teacher forcing: every position is supervised).
 */
export function trainingWindows(
  ids: ArrayLike<number>,
  starts: readonly number[],
  context: number,
): { x: tf.Tensor2D; y: tf.Tensor2D } {
  const x = new Int32Array(starts.length * context);
  const y = new Int32Array(starts.length * context);
  starts.forEach((start, i) => {
    for (let t = 0; t < context; t++) {
      x[i * context + t] = ids[start + t]!;
      y[i * context + t] = ids[start + t + 1]!;
    }
  });
  const shape: [number, number] = [starts.length, context];
  return { x: tf.tensor2d(x, shape, 'int32'), y: tf.tensor2d(y, shape, 'int32') };
}

/** `count` evenly spaced targets in [from + context, to), each with a full window before it. */
export function spacedTargets(from: number, to: number, count: number, context: number): number[] {
  const first = from + context;
  const stride = (to - first) / count;
  return Array.from({ length: count }, (_, i) => first + Math.floor(i * stride));
}

/** Mean -log2 p(label) of a batch of logits [rows, vocab], summed (bits). */
export async function bitsOf(
  logits: tf.Tensor,
  labels: tf.Tensor,
): Promise<{ bits: number; correct: number }> {
  const [logProbs, predicted] = tf.tidy(() => [
    tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(labels as tf.Tensor1D, logits.shape[1]!)), -1),
    tf.argMax(logits, -1),
  ]);
  const [values, argMaxes, truth] = [await logProbs!.data(), await predicted!.data(), await labels.data()];
  tf.dispose([logProbs!, predicted!]);
  let bits = 0;
  let correct = 0;
  for (let i = 0; i < values.length; i++) {
    bits -= values[i]! / Math.LN2;
    if (argMaxes[i] === truth[i]) correct++;
  }
  return { bits, correct };
}

/**
 * Runs the serving model over the test windows (with `options`, or none) and measures bits per
 * character, accuracy, mean blocks used and executed FLOPs from the compute reports.
 */
async function measure(
  model: Model,
  test: { x: tf.Tensor; y: tf.Tensor },
  options: RunOptions | undefined,
  exitNodes: readonly string[],
): Promise<Omit<TextRun, 'ms_per_batch'> & { histogram: number[] }> {
  const count = test.x.shape[0]!;
  const histogram = new Array<number>(exitNodes.length + 1).fill(0);
  let bits = 0;
  let correct = 0;
  let flops = 0;
  for (let start = 0; start < count; start += MEASURE_BATCH) {
    const rows = Math.min(MEASURE_BATCH, count - start);
    const [x, y] = [tf.slice(test.x, start, rows), tf.slice(test.y, start, rows)];
    const { outputs, report } = await model.run(x, {
      outputs: ['logits'],
      ...(options === undefined ? {} : { options }),
    });
    const batch = await bitsOf(outputs.logits!, y);
    bits += batch.bits;
    correct += batch.correct;
    flops += report!.flops;
    for (const node of report!.servedBy.logits!) {
      const k = exitNodes.indexOf(node);
      histogram[k < 0 ? exitNodes.length : k]! += 1;
    }
    tf.dispose([x, y, ...Object.values(outputs)]);
  }
  // The exit after block k serves after k blocks; the final output after all of them.
  const layers = histogram.reduce((sum, n, k) => sum + n * (k + 1), 0) / count;
  return {
    bpc: bits / count,
    accuracy: correct / count,
    mean_layers: layers,
    mflops_per_char: flops / count / 1e6,
    histogram,
  };
}

/** Bits per character and accuracy of every exit and of the final output, each serving every window. */
async function perLayer(
  model: Model,
  test: { x: tf.Tensor; y: tf.Tensor },
  exitOutputs: readonly string[],
): Promise<{ layer: number; bpc: number; accuracy: number }[]> {
  const names = [...exitOutputs, 'logits'];
  const totals = names.map(() => ({ bits: 0, correct: 0 }));
  const count = test.x.shape[0]!;
  for (let start = 0; start < count; start += MEASURE_BATCH) {
    const rows = Math.min(MEASURE_BATCH, count - start);
    const [x, y] = [tf.slice(test.x, start, rows), tf.slice(test.y, start, rows)];
    const { outputs } = await model.run(x, { outputs: names, report: false });
    for (const [i, name] of names.entries()) {
      const batch = await bitsOf(outputs[name]!, y);
      totals[i]!.bits += batch.bits;
      totals[i]!.correct += batch.correct;
    }
    tf.dispose([x, y, ...Object.values(outputs)]);
  }
  return totals.map((t, i) => ({ layer: i + 1, bpc: t.bits / count, accuracy: t.correct / count }));
}

/** Bits per character of `labels` under the add-one-smoothed character frequencies of `text`. */
export function unigramBits(
  text: ArrayLike<number>,
  end: number,
  vocab: number,
  labels: ArrayLike<number>,
): number {
  const counts = new Float64Array(vocab).fill(1);
  for (let i = 0; i < end; i++) counts[text[i]!]! += 1;
  const total = end + vocab;
  let bits = 0;
  for (let i = 0; i < labels.length; i++) bits -= Math.log2(counts[labels[i]!]! / total);
  return bits / labels.length;
}

/**
 * Trains `model` (the graph with exits) on random windows of the first `trainEnd` characters,
 * every position predicting its next character, with Adam, a linear warm-up over the first 5% of
 * the steps then cosine decay, and gradients clipped to norm 1.
 */
async function trainOnWindows(
  model: Model,
  graph: Graph,
  ids: ArrayLike<number>,
  trainEnd: number,
  config: CharTransformerConfig,
  options: { steps: number; batchSize: number; learningRate: number; seed: number; progress: boolean },
): Promise<{ seconds: number; end_loss_bits: number }> {
  const { steps, batchSize, learningRate } = options;
  const { context } = config;
  const rng = createRng(options.seed);
  const optimizer = tf.train.adam(learningRate);
  const trainer = new Trainer(model, { optimizer, loss: multiExitObjective({ graph }), clipNorm: 1 });
  const warmupSteps = Math.max(1, Math.round(steps * 0.05));
  const bar = progressBar('training', options.progress);
  let smoothed = Number.NaN;
  const started = performance.now();
  try {
    bar.start(steps, 0, { status: '' });
    for (let step = 0; step < steps; step++) {
      const starts = Array.from({ length: batchSize }, () => rng.int(trainEnd - context));
      const { x, y } = trainingWindows(ids, starts, context);
      const warm = Math.min(1, (step + 1) / warmupSteps);
      trainer.setLearningRate(learningRate * warm * 0.5 * (1 + Math.cos((Math.PI * step) / steps)));
      try {
        const { loss } = await trainer.step(x, y, rng.int(2 ** 31));
        // The objective sums the exits' and the final output's mean cross-entropies (nats).
        const bits = loss / config.layers / Math.LN2;
        smoothed = Number.isNaN(smoothed) ? bits : 0.95 * smoothed + 0.05 * bits;
        bar.update(step + 1, { status: `mean bits/char over the outputs ${smoothed.toFixed(2)}` });
      } finally {
        tf.dispose([x, y]);
      }
      // Let the progress bar redraw (readbacks on wasm resolve as microtasks).
      if (step % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  } finally {
    bar.stop();
    trainer.dispose();
    optimizer.dispose();
  }
  return { seconds: (performance.now() - started) / 1000, end_loss_bits: smoothed };
}

/**
 * Trains a small causal character-level transformer on Jane Austen's novels (the first 90% of
 * the text; every position of random windows predicts its next character) with an exit after
 * every block sharing the network's final norm and output head, calibrates max-softmax
 * thresholds on windows of the next 5% (the most accurate point within each compute budget), and
 * measures the serving network (one window per row,
 * predicting the character after it) on windows of the last 5% in one process on wasm: bits per
 * character under the served distribution, mean blocks used, executed FLOPs from the compute
 * reports and medians of measured time, for the static network and three operating points.
 */
export async function runBenchEarlyExitText(
  options: BenchEarlyExitTextOptions = {},
  log: (line: string) => void = () => {},
): Promise<BenchEarlyExitTextRun> {
  const seed = options.seed ?? 1;
  const steps = options.steps ?? 800;
  const batchSize = options.batchSize ?? 32;
  const peak = options.learningRate ?? 6e-3;
  const budgets = options.flopBudgets ?? TEXT_FLOP_BUDGETS;
  const timing = { warmup: options.warmup ?? 1, repeats: options.repeats ?? 5 };
  await useBackend('wasm');
  const austen = await loadAusten();
  const ids = austen.ids;
  const config: CharTransformerConfig = {
    vocab: austen.vocab.length,
    context: options.context ?? 32,
    width: options.width ?? 64,
    layers: options.layers ?? 4,
    heads: options.heads ?? 2,
  };
  const { context } = config;
  const trainEnd = Math.floor(ids.length * 0.9);
  const calibrationEnd = Math.floor(ids.length * 0.95);
  const calibration = windowsAt(
    ids,
    spacedTargets(trainEnd, calibrationEnd, options.calibrationWindows ?? 1024, context),
    context,
  );
  const test = windowsAt(
    ids,
    spacedTargets(calibrationEnd, ids.length, options.testWindows ?? 2048, context),
    context,
  );
  const counts = {
    train_chars: trainEnd,
    calibration_windows: calibration.y.shape[0],
    test_windows: test.y.shape[0],
  };
  log(
    `Austen: ${trainEnd.toLocaleString('en-US')} training characters, ${counts.calibration_windows} calibration and ${counts.test_windows} test windows of ${context}`,
  );

  const runtime = createRuntime({ plugins: [earlyExit()] });
  const graph = charTransformerWithExits(runtime, config);
  const model = createModel(runtime, graph, { seed });
  const models: Model[] = [model];
  try {
    const training = await trainOnWindows(model, graph, ids, trainEnd, config, {
      steps,
      batchSize,
      learningRate: peak,
      seed,
      progress: options.progress ?? true,
    });
    log(`trained ${steps} steps in ${training.seconds.toFixed(1)} s`);

    // Serving: one window per row, predicting the character after it.
    const serving = lastPositionModel(model);
    models.push(serving);
    const baseline = staticModel(serving);
    models.push(baseline);
    const sweep = await sweepExits(serving, calibration, {
      criterion: 'maxProb',
      thresholds: options.thresholds ?? TEXT_EXIT_THRESHOLDS,
      batchSize: MEASURE_BATCH,
    });
    const points: ParetoPoint[] = budgets.map((budget) =>
      pickOperatingPoint(sweep, { targetMeanFlops: budget * sweep.full.meanFlops }),
    );
    log(`operating points: max softmax >= ${points.map((p) => formatThreshold(p.threshold)).join(', ')}`);

    const exitNodes = sweep.exits;
    const full = await measure(baseline, test, undefined, exitNodes);
    const dynamic = [];
    for (const point of points)
      dynamic.push(await measure(serving, test, runOptionsFor(sweep, point), exitNodes));
    const layers = await perLayer(
      serving,
      test,
      exitOutputsOf(serving.graph).map((e) => e.logits),
    );

    log('timing batches of 256 windows');
    const batches = batchesOf(
      test.x,
      Math.min(test.x.shape[0]!, (options.timingBatches ?? 4) * MEASURE_BATCH),
      MEASURE_BATCH,
    );
    const times = await timeSideBySide(
      [
        runEach(baseline, undefined, batches),
        ...points.map((point) => runEach(serving, runOptionsFor(sweep, point), batches)),
      ],
      timing,
    );
    tf.dispose(batches);
    const perBatch = times.map((ms) => ms / batches.length);
    const { histogram: _, ...fullRun } = full;
    const result: BenchEarlyExitTextResult = {
      model: { ...config, params: model.paramCount },
      training: { steps, batch_size: batchSize, ...training },
      counts,
      unigram_bpc: unigramBits(ids, trainEnd, config.vocab, await test.y.data()),
      full: { ...fullRun, ms_per_batch: perBatch[0]! },
      operating_points: dynamic.map(({ histogram, ...run }, i) => ({
        threshold: points[i]!.threshold,
        flop_budget: budgets[i]!,
        ...run,
        ms_per_batch: perBatch[i + 1]!,
        exit_histogram: histogram,
        speedup: perBatch[0]! / perBatch[i + 1]!,
      })),
      per_layer: layers,
      layer1_correct_share: layers[0]!.accuracy,
    };
    const svg = await lineChartSvg({
      title: `Austen, ${config.layers}-block character transformer: bits per character against depth`,
      xLabel: 'mean blocks used per character',
      yLabel: 'bits per character (test)',
      series: [
        { name: 'every character at one exit', points: layers.map((l) => ({ x: l.layer, y: l.bpc })) },
        {
          name: 'early exit (operating points, full network)',
          points: [...result.operating_points, result.full].map((p) => ({ x: p.mean_layers, y: p.bpc })),
        },
      ],
    });
    const reportDir = await writeReport(options.out ?? 'reports/early-exit-text', {
      'sweep.json': `${JSON.stringify(sweep, null, 2)}\n`,
      'bpc-layers.svg': svg,
    });
    return {
      result,
      sweep,
      reportDir,
    };
  } finally {
    for (const m of models) m.dispose();
    tf.dispose([calibration.x, calibration.y, test.x, test.y]);
  }
}

/** The run as the markdown docs/benchmarks.md shows. */
export function benchEarlyExitTextMarkdown(run: BenchEarlyExitTextRun, head: BenchHead): string {
  const { result } = run;
  const { model, training, counts } = result;
  const row = (name: string, r: TextRun, histogram: string) => [
    name,
    r.bpc.toFixed(3),
    `${(r.accuracy * 100).toFixed(1)}%`,
    r.mean_layers.toFixed(2),
    r.mflops_per_char.toFixed(2),
    r.ms_per_batch.toFixed(0),
    `${(result.full.ms_per_batch / r.ms_per_batch).toFixed(2)}x`,
    histogram,
  ];
  return [
    `${measuredOn(head)}: a ${model.layers}-block ` +
      `character transformer (width ${model.width}, ${model.heads} heads, context ${model.context}, ` +
      `${model.params.toLocaleString('en-US')} parameters) trained ${training.steps} steps of ` +
      `${training.batch_size} windows (${training.seconds.toFixed(0)} s) on the first ` +
      `${counts.train_chars.toLocaleString('en-US')} characters of Austen; thresholds calibrated on ` +
      `${counts.calibration_windows} held-out windows, measured on ${counts.test_windows} test windows ` +
      '(one next character each); medians after warm-up.',
    '',
    markdownTable(
      [
        'network',
        'bits / char',
        'next-char accuracy',
        'mean blocks used',
        'MFLOPs / char',
        'ms / batch 256',
        'speedup',
        `served by exit 1..${model.layers - 1} / final`,
      ],
      [
        row(
          'static (every block)',
          result.full,
          [...new Array<number>(model.layers - 1).fill(0), counts.test_windows].join(' / '),
        ),
        ...result.operating_points.map((p) =>
          row(
            `max softmax >= ${formatThreshold(p.threshold)} (budget ${(p.flop_budget * 100).toFixed(0)}%)`,
            p,
            p.exit_histogram.join(' / '),
          ),
        ),
        ['unigram reference', result.unigram_bpc.toFixed(3), '', '', '', '', '', ''],
      ],
    ),
    '',
    `Share of test characters the first block's exit already predicts right: ` +
      `${(result.layer1_correct_share * 100).toFixed(1)}%. Bits per character with every character ` +
      `served at one exit: ${result.per_layer.map((l) => `${l.layer} block${l.layer > 1 ? 's' : ''} ${l.bpc.toFixed(3)}`).join(', ')}.`,
  ].join('\n');
}
