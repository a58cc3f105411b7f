import {
  createModel,
  createRng,
  createRuntime,
  DynnError,
  type Graph,
  type GraphNode,
  inferShapes,
  type Model,
  type Objective,
  type RunOptions,
  type Runtime,
  seedFor,
  Trainer,
  type TrainingWindow,
  useBackend,
} from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import { earlyExit, exitOutputsOf, lastPositionModel, multiExitObjective } from '@dynn/early-exit';
import { describeNesting, nestModel, sortedNet, subNetworkOptions } from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { batchesOf, MEASURE_BATCH, runEach } from '../exit-runs.js';
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';
// The early-exit text bench's windows, splits and bit counts: both benches measure the same way.
import {
  bitsOf,
  type CharTransformerConfig,
  charTransformerGraph,
  charTransformerWithExits,
  spacedTargets,
  trainingWindows,
  unigramBits,
  windowsAt,
} from './bench-early-exit-text.js';

/** Options of `dynn bench sorted-net text`. */
export interface BenchSortedNetTextOptions {
  /** Transformer layers (default 6). */
  layers?: number;
  /**
   * Width of the residual stream (default 48: three arms of 400 steps, the sorted one about twice
   * an ordinary step, fit the bench's 20 minutes on two shared cores).
   */
  width?: number;
  /** Attention heads (default 2). */
  heads?: number;
  /** Window length: characters of context (default 32). */
  context?: number;
  /** Training steps of each of the three arms (default 400). */
  steps?: number;
  /** Windows per training step (default 32). */
  batchSize?: number;
  /** Peak learning rate of Adam (default 6e-3; linear warm-up, then cosine decay), the same for every arm. */
  learningRate?: number;
  /**
   * Sub-networks per step of sorted training (default 3): the full model and `perStep - 1`
   * distinct shallower depths drawn uniformly from 1..layers-1 each step, their losses averaged
   * into one update.
   */
  perStep?: number;
  /**
   * How far sorted training's full-depth bits per character may lie above ordinary training's for
   * the goal to count as met, relative to the latter (default 0.05: 5%).
   */
  fullDepthTolerance?: number;
  /** Test windows measured, one next character each (default 2048). */
  testWindows?: number;
  /** Batches of 256 windows timed (default 4). */
  timingBatches?: number;
  /** Untimed runs before timing (default 1). */
  warmup?: number;
  /** Timed runs per case; the median is reported (default 5). */
  repeats?: number;
  /** Show progress bars while training (default true). */
  progress?: boolean;
  /** Seed of weights, training windows and sampled depths (default 1). */
  seed?: number;
  /** Folder for the BPC-versus-depth chart (default `reports/sorted-net-text`); the CLI adds `result.json`. */
  out?: string;
}

/** The three ways the one architecture is trained, with the same steps, batches, seed and schedule. */
export type TextArm = 'ordinary' | 'sorted' | 'early_exit';

/** The arms in the order every report lists them. */
export const TEXT_ARMS: readonly TextArm[] = ['ordinary', 'sorted', 'early_exit'];

/** One arm read out at one depth on the test windows. */
export interface DepthReadout {
  /** Bits per character: mean -log2 p(true next character). */
  bpc: number;
  /** Fraction of next characters predicted right (arg-max). */
  accuracy: number;
}

/** Every arm at one depth, with what that depth costs. */
export interface DepthRow {
  /** Transformer layers kept (1..layers). */
  layers: number;
  /** The run option that selects it: `{ 'sorted-net': { depth } }`, two residual blocks per layer. */
  depth: number;
  /** FLOPs the compute report counts per character (one window, its last position read out), in millions. */
  mflops_per_char: number;
  /** Median milliseconds per batch of 256 windows at this depth. */
  ms_per_batch: number;
  /** Ordinary training (full depth only), read out after `layers` layers through the final norm and head. */
  ordinary: DepthReadout;
  /** Sorted fine-tuning (SoFT): the full model and sampled shallower depths trained each step. */
  sorted: DepthReadout;
  /** Early-exit training: an exit after every layer sharing the final norm and head, trained jointly. */
  early_exit: DepthReadout;
}

/** Training of one arm. */
export interface ArmTraining {
  /** Wall-clock seconds of its training steps. */
  seconds: number;
  /**
   * Smoothed training loss at the end, in bits per character: the full model's cross-entropy
   * (ordinary), the mean over the step's sub-networks (sorted), the mean over the exits and the
   * final output (early exit).
   */
  end_loss_bits: number;
}

/** Whether sorted training did what it is for, with the numbers that decide it. */
export interface SortedTextGoal {
  /** The claim, in words. */
  statement: string;
  /** Per depth below the full one: sorted bpc minus ordinary bpc (negative: sorted is better). */
  shallow_gaps: { layers: number; bpc_gap: number }[];
  /** Sorted training beats ordinary training's read-out at every depth below the full one. */
  shallow_better: boolean;
  /** Sorted bpc minus ordinary bpc at full depth. */
  full_depth_gap_bpc: number;
  /** That gap relative to ordinary training's full-depth bpc. */
  full_depth_gap_relative: number;
  /** The relative gap allowed at full depth. */
  full_depth_tolerance: number;
  /** The full-depth gap is within the tolerance. */
  full_depth_close: boolean;
  /** Both parts held. */
  held: boolean;
}

/** The fields `dynn bench sorted-net text --json` adds to the bench envelope. */
export interface BenchSortedNetTextResult {
  model: CharTransformerConfig & { params: number };
  /** Steps, windows per step and schedule shared by the arms, and each arm's training. */
  training: {
    steps: number;
    batch_size: number;
    learning_rate: number;
    /** Sub-networks per sorted step: the full model and `per_step - 1` sampled shallower depths. */
    sorted_per_step: number;
    arms: Record<TextArm, ArmTraining>;
  };
  /** Characters trained on and test windows measured on (one next character each). */
  counts: { train_chars: number; test_windows: number };
  /** Bits per test character coded with the training split's character frequencies (add-one smoothed). */
  unigram_bpc: number;
  /** Every depth 1..layers, each arm read out there. */
  per_depth: DepthRow[];
  /** Median milliseconds per batch of the un-nested serving network (every layer), timed with the depths. */
  static_ms_per_batch: number;
  /**
   * Largest difference in bpc between the early-exit model's own exits and the nested model
   * carrying its weights read out at the same depths: the two compute the same function, so
   * this is float noise.
   */
  exit_readout_max_diff: number;
  goal: SortedTextGoal;
}

/** The result with where its files went. */
export interface BenchSortedNetTextRun {
  result: BenchSortedNetTextResult;
  /** Absolute folder the report files were written to. */
  reportDir: string;
}

/** `--quick`: a smoke-sized run of a few seconds (CI), not a measurement to quote. */
export const QUICK_BENCH_SORTED_NET_TEXT: BenchSortedNetTextOptions = {
  layers: 3,
  width: 16,
  heads: 2,
  context: 8,
  steps: 60,
  batchSize: 16,
  learningRate: 1e-2,
  perStep: 2,
  testWindows: 300,
  timingBatches: 1,
  warmup: 0,
  repeats: 1,
};

/** The serving graph's node that picks the last position for the head (see {@link lastPositionGraph}). */
const LAST_POSITION_NODE = 'head/last';

/**
 * `graph` (the char transformer, nested or not) serving one next character per window: the head
 * reads the last position through a `core.TimeStep` node, as early-exit's `last-position` pass
 * does for graphs with exits (that pass refuses a graph without them). No parameter changes, so
 * the trained weights serve unchanged.
 */
function lastPositionGraph(runtime: Runtime, graph: Graph): Graph {
  const head = graph.nodes.find((n) => n.name === 'head');
  if (head === undefined) throw new Error('the char transformer has no node named head');
  const last = `${head.inputs[0]!}/last`;
  const timeStep: GraphNode = {
    name: LAST_POSITION_NODE,
    op: 'core.TimeStep',
    inputs: [head.inputs[0]!],
    outputs: [last],
    attrs: { index: -1 },
  };
  const rewired: Graph = {
    ...graph,
    nodes: graph.nodes.flatMap((n) =>
      n === head ? [timeStep, { ...n, inputs: [last, ...n.inputs.slice(1)] }] : [n],
    ),
  };
  const values = inferShapes(runtime, rewired);
  return {
    ...rewired,
    outputs: graph.outputs.map((o) => ({ ...o, shape: [...values.get(o.name)!.shape] })),
  };
}

/** A new model of `graph` holding copies of `model`'s parameters and state (same names). */
function withWeightsOf(runtime: Runtime, graph: Graph, model: Model): Model {
  const weights = new Map<string, tf.Tensor>();
  for (const [name, v] of [...model.params, ...model.state]) weights.set(name, v.clone());
  return createModel(runtime, graph, { weights });
}

/** What one arm's training loop needs besides the model. */
interface ArmPlan {
  label: string;
  loss: Objective;
  /** The windows of step `step` on one batch. */
  windows(x: tf.Tensor, y: tf.Tensor, step: number): TrainingWindow[];
  /** Turns the step's loss (nats) into the bits per character the progress bar shows. */
  bits(loss: number): number;
}

/**
 * Trains one arm on random windows of the first `trainEnd` characters, every position predicting
 * its next character, with Adam, a linear warm-up over the first 5% of the steps then cosine
 * decay, and gradients clipped to norm 1 (the early-exit text bench's recipe). The windows and
 * step seeds come from `seed` alone, so every arm sees the same batches in the same order.
 */
async function trainArm(
  model: Model,
  ids: ArrayLike<number>,
  trainEnd: number,
  context: number,
  plan: ArmPlan,
  options: { steps: number; batchSize: number; learningRate: number; seed: number; progress: boolean },
): Promise<ArmTraining> {
  const { steps, batchSize, learningRate } = options;
  const rng = createRng(options.seed);
  const optimizer = tf.train.adam(learningRate);
  const trainer = new Trainer(model, { optimizer, loss: plan.loss, clipNorm: 1 });
  const warmupSteps = Math.max(1, Math.round(steps * 0.05));
  const bar = progressBar(`training (${plan.label})`, options.progress);
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
        const { loss } = await trainer.stepWindows(plan.windows(x, y, step), { seed: rng.int(2 ** 31) });
        const bits = plan.bits(loss);
        smoothed = Number.isNaN(smoothed) ? bits : 0.95 * smoothed + 0.05 * bits;
        bar.update(step + 1, { status: `bits/char ${smoothed.toFixed(2)}` });
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
 * `count` distinct values drawn uniformly from 1..`max` (a partial Fisher-Yates shuffle), sorted
 * descending so the step's windows go from the largest sub-network down.
 */
function distinctDepths(max: number, count: number, rng: { int(n: number): number }): number[] {
  const pool = Array.from({ length: max }, (_, i) => i + 1);
  for (let i = 0; i < count; i++) {
    const j = i + rng.int(max - i);
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count).sort((a, b) => b - a);
}

/** Bits per character and accuracy of `model` on the test windows under `options`; FLOPs from the compute reports. */
async function readOut(
  model: Model,
  test: { x: tf.Tensor; y: tf.Tensor },
  options: RunOptions | undefined,
): Promise<DepthReadout & { mflops_per_char: number }> {
  const count = test.x.shape[0]!;
  let bits = 0;
  let correct = 0;
  let flops = 0;
  for (let start = 0; start < count; start += MEASURE_BATCH) {
    const rows = Math.min(MEASURE_BATCH, count - start);
    const [x, y] = [tf.slice(test.x, start, rows), tf.slice(test.y, start, rows)];
    try {
      const { outputs, report } = await model.run(x, {
        outputs: ['logits'],
        report: true,
        ...(options === undefined ? {} : { options }),
      });
      const batch = await bitsOf(outputs.logits!, y);
      tf.dispose(Object.values(outputs));
      bits += batch.bits;
      correct += batch.correct;
      flops += report!.flops;
    } finally {
      tf.dispose([x, y]);
    }
  }
  return { bpc: bits / count, accuracy: correct / count, mflops_per_char: flops / count / 1e6 };
}

/** Bits per character of every exit of a serving multi-exit model and of its final output, in depth order. */
async function exitReadouts(model: Model, test: { x: tf.Tensor; y: tf.Tensor }): Promise<number[]> {
  const names = [...exitOutputsOf(model.graph).map((e) => e.logits), 'logits'];
  const bits = names.map(() => 0);
  const count = test.x.shape[0]!;
  for (let start = 0; start < count; start += MEASURE_BATCH) {
    const rows = Math.min(MEASURE_BATCH, count - start);
    const [x, y] = [tf.slice(test.x, start, rows), tf.slice(test.y, start, rows)];
    try {
      const { outputs } = await model.run(x, { outputs: names, report: false });
      for (const [i, name] of names.entries()) bits[i]! += (await bitsOf(outputs[name]!, y)).bits;
      tf.dispose(Object.values(outputs));
    } finally {
      tf.dispose([x, y]);
    }
  }
  return bits.map((b) => b / count);
}

/** The goal of the bench, judged on the measured rows. */
function judgeGoal(rows: readonly DepthRow[], tolerance: number): SortedTextGoal {
  const full = rows.at(-1)!;
  const shallow = rows
    .slice(0, -1)
    .map((r) => ({ layers: r.layers, bpc_gap: r.sorted.bpc - r.ordinary.bpc }));
  const gap = full.sorted.bpc - full.ordinary.bpc;
  const relative = gap / full.ordinary.bpc;
  const shallowBetter = shallow.every((s) => s.bpc_gap < 0);
  const close = relative <= tolerance;
  return {
    statement:
      "sorted training's bits per character at every depth below the full one beat ordinary training's " +
      `read-out at the same depth, and at full depth it lies within ${(tolerance * 100).toFixed(0)}% of ordinary training's`,
    shallow_gaps: shallow,
    shallow_better: shallowBetter,
    full_depth_gap_bpc: gap,
    full_depth_gap_relative: relative,
    full_depth_tolerance: tolerance,
    full_depth_close: close,
    held: shallowBetter && close,
  };
}

/**
 * SoFT (Sorted Fine-Tuning, Sorted LLaMA) on a small causal character transformer on Jane
 * Austen's novels, against ordinary training and early-exit training of the same architecture
 * with the same steps, batches, seed and learning-rate schedule, all on wasm in one process:
 *
 * - ordinary: the full model alone, then read out after each layer through its final norm and
 *   head (the model nested by depth with `nestModel`, each layer two residual blocks);
 * - sorted: each step the full model and `perStep - 1` sampled shallower depths of the nested
 *   model on the same batch, their cross-entropies averaged into one update (labels only, no
 *   distillation, as SoFT), read out at each depth the same way;
 * - early exit: an exit after every layer sharing the final norm and head, trained jointly with
 *   `multiExitObjective` (the early-exit text bench's method), its weights read out at each depth
 *   the same way (checked against its own exits).
 *
 * Each serving model predicts one next character per window (the last position) on windows of
 * the last 5% of the text, the early-exit text bench's test windows: bits per character and
 * accuracy per arm and depth, FLOPs per character from the compute reports, and medians of
 * measured time per batch of 256 windows at each depth, side by side.
 */
export async function runBenchSortedNetText(
  options: BenchSortedNetTextOptions = {},
  log: (line: string) => void = () => {},
): Promise<BenchSortedNetTextRun> {
  const seed = options.seed ?? 1;
  const plan = {
    steps: options.steps ?? 400,
    batchSize: options.batchSize ?? 32,
    learningRate: options.learningRate ?? 6e-3,
    seed,
    progress: options.progress ?? true,
  };
  const timing = { warmup: options.warmup ?? 1, repeats: options.repeats ?? 5 };
  await useBackend('wasm');
  const austen = await loadAusten();
  const ids = austen.ids;
  const config: CharTransformerConfig = {
    vocab: austen.vocab.length,
    context: options.context ?? 32,
    width: options.width ?? 48,
    layers: options.layers ?? 6,
    heads: options.heads ?? 2,
  };
  const { context, layers } = config;
  const perStep = Math.min(options.perStep ?? 3, layers);
  if (!Number.isInteger(perStep) || perStep < 1) {
    throw new DynnError('INVALID_OPTION', `perStep must be a positive integer, got ${options.perStep}.`);
  }
  // The early-exit text bench's splits: train on the first 90%, test on windows of the last 5%.
  const trainEnd = Math.floor(ids.length * 0.9);
  const testStart = Math.floor(ids.length * 0.95);
  const test = windowsAt(
    ids,
    spacedTargets(testStart, ids.length, options.testWindows ?? 2048, context),
    context,
  );
  const counts = { train_chars: trainEnd, test_windows: test.y.shape[0] };
  log(
    `Austen: ${trainEnd.toLocaleString('en-US')} training characters, ${counts.test_windows} test windows of ${context}`,
  );

  const runtime = createRuntime({ plugins: [earlyExit(), sortedNet()] });
  const models: Model[] = [];
  const keep = <M extends Model>(m: M): M => {
    models.push(m);
    return m;
  };
  const batches: tf.Tensor[] = [];
  try {
    // One initialisation for every arm: parameters are seeded by name, and the exits share the
    // final norm's and the head's, so the multi-exit graph has exactly the plain graph's.
    const plain = keep(createModel(runtime, charTransformerGraph(runtime, config), { seed }));
    // Depth only: no width knob (groups: []), so every layer stays a plain op and only the
    // residual adds become depth-nested blocks.
    const ordinary = keep(await nestModel(plain, { sort: 'none', groups: [] }));
    const sorted = keep(await nestModel(plain, { sort: 'none', groups: [] }));
    const exitGraph = charTransformerWithExits(runtime, config);
    const withExits = keep(createModel(runtime, exitGraph, { seed }));
    const blocks = describeNesting(ordinary.graph).stages.map((s) => s.blocks.length);
    if (blocks.length !== 1 || blocks[0] !== 2 * layers) {
      throw new Error(`expected one stage of ${2 * layers} residual blocks, found ${JSON.stringify(blocks)}`);
    }
    // Layer k ends residual blocks 2k-1 (attention) and 2k (MLP): reading out after k layers is depth 2k.
    const depthOptions = Array.from({ length: layers }, (_, i) => subNetworkOptions({ depth: 2 * (i + 1) }));
    const toBits = (nats: number) => nats / Math.LN2;

    const arms = {} as Record<TextArm, ArmTraining>;
    arms.ordinary = await trainArm(
      ordinary,
      ids,
      trainEnd,
      context,
      {
        label: 'ordinary',
        loss: 'sparseCategoricalCrossentropy',
        windows: (x, y) => [{ x, y }],
        bits: toBits,
      },
      plan,
    );
    log(`ordinary: ${plan.steps} steps in ${arms.ordinary.seconds.toFixed(1)} s`);
    const depthRng = createRng(seedFor(seed, 'sorted-net-text.depths'));
    arms.sorted = await trainArm(
      sorted,
      ids,
      trainEnd,
      context,
      {
        label: 'sorted',
        loss: 'sparseCategoricalCrossentropy',
        windows: (x, y) => [
          { x, y },
          ...distinctDepths(layers - 1, perStep - 1, depthRng).map((k) => ({
            x,
            y,
            options: depthOptions[k - 1]!,
          })),
        ],
        bits: toBits,
      },
      plan,
    );
    log(
      `sorted (full + ${perStep - 1} sampled depths per step): ${plan.steps} steps in ${arms.sorted.seconds.toFixed(1)} s`,
    );
    arms.early_exit = await trainArm(
      withExits,
      ids,
      trainEnd,
      context,
      {
        label: 'early exit',
        loss: multiExitObjective({ graph: exitGraph }),
        windows: (x, y) => [{ x, y }],
        // The objective sums the exits' and the final output's mean cross-entropies.
        bits: (nats) => toBits(nats) / layers,
      },
      plan,
    );
    log(`early exit: ${plan.steps} steps in ${arms.early_exit.seconds.toFixed(1)} s`);

    // Serving: one window per row, the head reading its last position; every arm through the
    // same nested graph, so a depth costs the same whichever weights it carries.
    const serving = lastPositionGraph(runtime, ordinary.graph);
    const servers: Record<TextArm, Model> = {
      ordinary: keep(withWeightsOf(runtime, serving, ordinary)),
      sorted: keep(withWeightsOf(runtime, serving, sorted)),
      early_exit: keep(withWeightsOf(runtime, serving, withExits)),
    };
    const readouts = {} as Record<TextArm, (DepthReadout & { mflops_per_char: number })[]>;
    const bar = progressBar('reading out', plan.progress);
    bar.start(TEXT_ARMS.length * layers, 0, { status: '' });
    try {
      for (const [a, arm] of TEXT_ARMS.entries()) {
        readouts[arm] = [];
        for (let k = 1; k <= layers; k++) {
          readouts[arm].push(await readOut(servers[arm], test, depthOptions[k - 1]));
          bar.update(a * layers + k, { status: `${arm}, ${k} layer${k > 1 ? 's' : ''}` });
        }
      }
    } finally {
      bar.stop();
    }
    // The early-exit model's own exits compute what the nested read-out computes with its weights.
    const exitBpc = await exitReadouts(keep(lastPositionModel(withExits)), test);
    const exitDiff = Math.max(...exitBpc.map((b, i) => Math.abs(b - readouts.early_exit[i]!.bpc)));

    log('timing batches of 256 windows at each depth');
    const staticServing = keep(withWeightsOf(runtime, lastPositionGraph(runtime, plain.graph), plain));
    batches.push(
      ...batchesOf(
        test.x,
        Math.min(test.x.shape[0]!, (options.timingBatches ?? 4) * MEASURE_BATCH),
        MEASURE_BATCH,
      ),
    );
    const times = await timeSideBySide(
      [
        runEach(staticServing, undefined, batches),
        ...depthOptions.map((o) => runEach(servers.sorted, o, batches)),
      ],
      timing,
    );
    const perBatch = times.map((ms) => ms / batches.length);

    const perDepth: DepthRow[] = depthOptions.map((_, i) => {
      const pick = (arm: TextArm): DepthReadout => ({
        bpc: readouts[arm][i]!.bpc,
        accuracy: readouts[arm][i]!.accuracy,
      });
      return {
        layers: i + 1,
        depth: 2 * (i + 1),
        mflops_per_char: readouts.sorted[i]!.mflops_per_char,
        ms_per_batch: perBatch[i + 1]!,
        ordinary: pick('ordinary'),
        sorted: pick('sorted'),
        early_exit: pick('early_exit'),
      };
    });
    const result: BenchSortedNetTextResult = {
      model: { ...config, params: plain.paramCount },
      training: {
        steps: plan.steps,
        batch_size: plan.batchSize,
        learning_rate: plan.learningRate,
        sorted_per_step: perStep,
        arms,
      },
      counts,
      unigram_bpc: unigramBits(ids, trainEnd, config.vocab, await test.y.data()),
      per_depth: perDepth,
      static_ms_per_batch: perBatch[0]!,
      exit_readout_max_diff: exitDiff,
      goal: judgeGoal(perDepth, options.fullDepthTolerance ?? 0.05),
    };
    const names: Record<TextArm, string> = {
      ordinary: 'ordinary training, read out early',
      sorted: `sorted training (SoFT, full + ${perStep - 1} depths per step)`,
      early_exit: 'early-exit training (shared-head exits)',
    };
    const svg = await lineChartSvg({
      title: `Austen, ${layers}-layer character transformer: bits per character against depth`,
      xLabel: 'layers run (read out through the final norm and head)',
      yLabel: 'bits per character (test)',
      series: TEXT_ARMS.map((arm) => ({
        name: names[arm],
        points: perDepth.map((r) => ({ x: r.layers, y: r[arm].bpc })),
      })),
    });
    const reportDir = await writeReport(options.out ?? 'reports/sorted-net-text', { 'bpc-depth.svg': svg });
    return { result, reportDir };
  } finally {
    for (const m of models) m.dispose();
    tf.dispose([...batches, test.x, test.y]);
  }
}

/** The run as the markdown docs/benchmarks.md shows. */
export function benchSortedNetTextMarkdown(run: BenchSortedNetTextRun, head: BenchHead): string {
  const { result } = run;
  const { model, training, counts, goal } = result;
  const full = result.per_depth.at(-1)!;
  const cell = (r: DepthReadout) => `${r.bpc.toFixed(3)} (${(r.accuracy * 100).toFixed(1)}%)`;
  const seconds = (arm: TextArm) => training.arms[arm].seconds.toFixed(0);
  const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(3)}`;
  return [
    `${measuredOn(head)}: a ${model.layers}-layer pre-norm character transformer (width ${model.width}, ` +
      `${model.heads} heads, context ${model.context}, ${model.params.toLocaleString('en-US')} parameters, one ` +
      `final norm and head) trained three ways for ${training.steps} steps of ${training.batch_size} windows ` +
      `each, same batches, seed and schedule, on the first ${counts.train_chars.toLocaleString('en-US')} ` +
      `characters of Austen: ordinary training (${seconds('ordinary')} s), sorted training (SoFT: the full ` +
      `model and ${training.sorted_per_step - 1} sampled shallower depths per step, ${seconds('sorted')} s) and ` +
      `early-exit training with shared-head exits (${seconds('early_exit')} s). Each is read out after every ` +
      `layer through the final norm and head on ${counts.test_windows} test windows (one next character ` +
      'each); bits per character (next-character accuracy); medians after warm-up.',
    '',
    markdownTable(
      [
        'layers',
        'MFLOPs / char',
        'ms / batch 256',
        'ordinary, read out',
        'sorted (SoFT)',
        'early-exit exits',
      ],
      [
        ...result.per_depth.map((r) => [
          r.layers,
          r.mflops_per_char.toFixed(3),
          r.ms_per_batch.toFixed(0),
          cell(r.ordinary),
          cell(r.sorted),
          cell(r.early_exit),
        ]),
        ['unigram reference', '', '', result.unigram_bpc.toFixed(3), '', ''],
      ],
    ),
    '',
    `Goal (${goal.held ? 'met' : 'not met'}): ${goal.statement}. Sorted minus ordinary below full depth: ` +
      `${goal.shallow_gaps.map((g) => `${g.layers}: ${signed(g.bpc_gap)}`).join(', ')} bpc ` +
      `(${goal.shallow_better ? 'better at every depth' : 'not better at every depth'}); at full depth ` +
      `${full.sorted.bpc.toFixed(3)} against ${full.ordinary.bpc.toFixed(3)}, a gap of ` +
      `${signed(goal.full_depth_gap_bpc)} bpc ` +
      `(${(goal.full_depth_gap_relative * 100).toFixed(1)}%, ${goal.full_depth_close ? 'within' : 'outside'} ` +
      `${(goal.full_depth_tolerance * 100).toFixed(0)}%). Sorted minus early-exit exits, layers 1..${model.layers}: ` +
      `${result.per_depth.map((r) => signed(r.sorted.bpc - r.early_exit.bpc)).join(', ')} bpc (the exits' ` +
      "objective sums every depth's cross-entropy through the shared head, in one forward pass). The " +
      'un-nested serving network takes ' +
      `${result.static_ms_per_batch.toFixed(0)} ms per batch at full depth.`,
  ].join('\n');
}
