import {
  createModel,
  createRng,
  createRuntime,
  DynnError,
  HostBatches,
  type Model,
  type RunOptions,
  shuffledIndices,
  Trainer,
  useBackend,
} from '@dynn/core';
import {
  calibrateBatchNorm,
  evaluateRobustness,
  nestModel,
  residualCnnGraph,
  robustDistillationObjective,
  robustDistillationWindows,
  type SubNetwork,
  sortedNet,
  sortedWindows,
  subNetworkOptions,
} from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { loadFashionMnist } from '../fashion-mnist.js';
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { type Spread, spreadOf } from '../spread.js';

/** How the students of each step are chosen. */
export type RobustStrategy = 'progressive' | 'random';

/** The strategies compared, in the order they run. */
export const ROBUST_STRATEGIES: readonly RobustStrategy[] = ['progressive', 'random'];

/** L-infinity radius of every attack: 8/255, the CIFAR convention, on pixels in [0, 1]. */
export const ROBUST_EPSILON = 8 / 255;

/** PGD steps of every measurement (training may use fewer: `trainPgdSteps`). */
export const EVAL_PGD_STEPS = 10;

/** Options of `dynn bench sorted-net robust`. */
export interface BenchSortedNetRobustOptions {
  /** Seeds of weights, batch order, sampling and attacks: one trained model per seed and strategy (default 1, 2, 3). */
  seeds?: readonly number[];
  /** Robust-distillation steps of the largest network alone, shared by both strategies of a seed (default 80). */
  warmupSteps?: number;
  /** Robust-distillation steps of each strategy after the warm-up (default 120). */
  steps?: number;
  /** Rows per step (default 64). */
  batchSize?: number;
  /** Sub-networks trained per step (default 2, the largest among them). */
  studentsPerStep?: number;
  /** PGD steps of the training-time attack (default 3; measurements always take {@link EVAL_PGD_STEPS}). */
  trainPgdSteps?: number;
  /** Training images batches are drawn from (default the first 20,000). */
  trainPool?: number;
  /** Test images measured: the first N of the test set (default 1,000). */
  testRows?: number;
  /** Batches of 128 training images the batch-norm statistics are recalibrated on, per measured sub-network (default 8). */
  recalibrationBatches?: number;
  /**
   * Side of the images trained and measured on (default 14: Fashion-MNIST's 28x28 images averaged
   * over 2x2 blocks, pixels still in [0, 1]). A quarter of the pixels makes every convolution about
   * 3x faster on wasm, which buys the training steps a 20-minute budget on two shared cores
   * needs; 28 trains on the original images.
   */
  imageSize?: 14 | 28;
  /** Folder for result files (default `reports/sorted-net-robust`). */
  out?: string;
  /** Show a progress bar while training (default true). */
  progress?: boolean;
}

/** `--quick`: a smoke-sized run (CI), not a measurement to quote. */
export const QUICK_BENCH_SORTED_NET_ROBUST: BenchSortedNetRobustOptions = {
  seeds: [1, 2],
  warmupSteps: 1,
  steps: 3,
  batchSize: 16,
  trainPool: 512,
  testRows: 32,
  recalibrationBatches: 1,
};

/** Channels per stage of the bench's residual CNN. */
export const ROBUST_CNN_WIDTHS = [8, 16] as const;
/** Residual blocks per stage. */
export const ROBUST_CNN_BLOCKS = 2;
/** Width fractions sampled (channels in multiples of 2: 4, 6 or 8 of stage 0's 8, 8, 12 or 16 of stage 1's). */
export const ROBUST_WIDTHS = [0.5, 0.75, 1] as const;
/** Residual blocks kept per stage, sampled. */
export const ROBUST_DEPTHS = [1, 2] as const;
/** Distillation temperature and weight of the KL term (ARD-style: the label term gets the rest). */
export const ROBUST_DISTILLATION = { temperature: 4, alpha: 0.9 } as const;
/** Adam's learning rate; each strategy's steps decay it to 0 along a cosine. */
const LEARNING_RATE = 3e-3;
const RECALIBRATION_BATCH = 128;
const MEASURE_BATCH = 250;

/** Clean and PGD accuracy of one sub-network of one trained model. */
export interface RobustMeasurement {
  /** Fraction of the test rows classified right. */
  clean: number;
  /** Fraction classified right after PGD-10 at epsilon 8/255 against this sub-network. */
  pgd: number;
}

/** One trained model: a seed and a strategy. */
export interface RobustRun {
  seed: number;
  strategy: RobustStrategy;
  smallest: RobustMeasurement;
  largest: RobustMeasurement;
  /** Seconds of this strategy's training steps (the shared warm-up not included). */
  train_seconds: number;
}

/** One strategy over the seeds. */
export interface RobustSummary {
  smallest: { clean: Spread; pgd: Spread };
  largest: { clean: Spread; pgd: Spread };
}

/** The fields `dynn bench sorted-net robust --json` adds to the bench envelope. */
export interface BenchSortedNetRobustResult {
  /** What was trained and measured, and how. */
  setup: {
    dataset: 'fashion-mnist';
    /** Side of the images (14: 2x2 means of the 28x28 originals). */
    image_size: number;
    train_pool: number;
    test_rows: number;
    batch_size: number;
    warmup_steps: number;
    steps: number;
    students_per_step: number;
    epsilon: number;
    train_pgd_steps: number;
    eval_pgd_steps: number;
    temperature: number;
    alpha: number;
    cnn_widths: number[];
    cnn_blocks: number;
    widths: number[];
    depths: number[];
    smallest: SubNetwork;
    largest: SubNetwork;
    /** MFLOPs per image of the smallest and the largest sub-network (compute reports). */
    mflops: { smallest: number; largest: number };
    seeds: number[];
  };
  /** Every trained model, seed by seed. */
  runs: RobustRun[];
  /** Per strategy, over the seeds. */
  summary: Record<RobustStrategy, RobustSummary>;
  /** The issue's goal: progressive >= random in mean PGD accuracy of the smallest and of the largest. */
  goal: {
    met: boolean;
    smallest_pgd: { progressive: number; random: number; met: boolean };
    largest_pgd: { progressive: number; random: number; met: boolean };
  };
  /** Wall-clock seconds of the whole bench. */
  seconds: number;
}

/** The result with the folder it wrote. */
export interface BenchSortedNetRobustRun {
  result: BenchSortedNetRobustResult;
  reportDir: string;
}

/** The students of each step: `(batch, step) => run options`, one list per step. */
type Students = (batch: { x: tf.Tensor; y: tf.Tensor }, step: number) => RunOptions[];

/**
 * The students of a strategy, from sorted-net's own samplers (`studentsPerStep` per step, the
 * largest first in both):
 *
 * - `progressive`: once-for-all's progressive shrinking (as ProARD trains its students). Its first
 *   two phases train the largest alone (this CNN has no elastic kernel), which is what the shared
 *   warm-up did, so the strategy's steps start at the depth phase: half the steps sample depths
 *   at full width, the rest depths and widths (sandwich: the largest and the smallest unlocked
 *   sub-network, then uniform draws).
 * - `random`: SortedNet's sampling (`sorted`): the largest, then sub-networks drawn uniformly
 *   from the whole space every step. The largest stays a student so that both strategies train
 *   the teacher on adversarial inputs equally often.
 */
function studentsOf(strategy: RobustStrategy, count: number, steps: number, seed: number): Students {
  const space = { widths: ROBUST_WIDTHS, depths: ROBUST_DEPTHS, perStep: count, seed };
  if (strategy === 'random') {
    const windows = sortedWindows({ ...space, strategy: 'sorted' });
    return (batch, step) => windows(batch, step).map((w) => w.options ?? {});
  }
  const phaseSteps = Math.max(1, Math.ceil(steps / 2));
  const windows = sortedWindows({ ...space, strategy: 'progressive', phaseSteps });
  // Phases 0 and 1 (the largest alone) are the warm-up's: start at phase 2.
  return (batch, step) => windows(batch, step + 2 * phaseSteps).map((w) => w.options ?? {});
}

/** Copies of every parameter and state tensor, to start several trainings from one point. */
function snapshot(model: Model): Map<tf.Variable, tf.Tensor> {
  return new Map([...model.params.values(), ...model.state.values()].map((v) => [v, tf.clone(v)]));
}

function restore(saved: ReadonlyMap<tf.Variable, tf.Tensor>): void {
  for (const [variable, value] of saved) variable.assign(value);
}

/** MFLOPs per image of one sub-network, from the compute report of a run. */
async function mflopsOf(model: Model, x: tf.Tensor, options: RunOptions): Promise<number> {
  const { outputs, report } = await model.run(x, { options, report: true, checkInputs: false });
  tf.dispose(Object.values(outputs));
  return report!.flops / x.shape[0]! / 1e6;
}

/**
 * Robust students of a nested network, ProARD-style: a small residual CNN on Fashion-MNIST is
 * nested (widths and depths per call), the largest network is first trained alone by robust
 * distillation for `warmupSteps` (the robust teacher ProARD starts from, shared by both
 * strategies of a seed), then for `steps` per strategy with the teacher (the largest, clean
 * inputs) and `studentsPerStep` students (the largest among them, each on PGD inputs crafted
 * against itself) per step, the students chosen by progressive shrinking or uniformly at random.
 * After batch-norm recalibration, the clean and PGD-10 accuracy (epsilon 8/255) of the smallest
 * and the largest sub-network are measured on the first `testRows` test images. Every seed
 * trains both strategies from the same warm-up weights on the same batches. Writes `runs.json`
 * and an accuracy-versus-MFLOPs chart into the report folder.
 */
export async function runBenchSortedNetRobust(
  options: BenchSortedNetRobustOptions = {},
  log: (line: string) => void = () => {},
): Promise<BenchSortedNetRobustRun> {
  const started = performance.now();
  const seeds = [...(options.seeds ?? [1, 2, 3])];
  const warmupSteps = options.warmupSteps ?? 80;
  const steps = options.steps ?? 120;
  const batchSize = options.batchSize ?? 64;
  const studentsPerStep = options.studentsPerStep ?? 2;
  const trainPgdSteps = options.trainPgdSteps ?? 3;
  const recalibrationBatches = options.recalibrationBatches ?? 8;
  const imageSize = options.imageSize ?? 14;
  if (imageSize !== 14 && imageSize !== 28) {
    throw new DynnError('INVALID_OPTION', `imageSize must be 14 or 28, got ${JSON.stringify(imageSize)}.`);
  }
  await useBackend('wasm');
  const data = await loadFashionMnist();
  const trainPool = Math.min(
    options.trainPool ?? 20_000,
    data.train.count - recalibrationBatches * RECALIBRATION_BATCH,
  );
  const testRows = Math.min(options.testRows ?? 1000, data.test.count);
  const trainTensors = data.train.toTensors();
  const testTensors = data.test.toTensors();
  // A 2x2 mean keeps pixels in [0, 1]: epsilon means the same on the smaller images.
  const resize = (images: tf.Tensor) => {
    if (imageSize === 28) return images;
    const small = tf.avgPool(images as tf.Tensor4D, 2, 2, 'valid');
    images.dispose();
    return small;
  };
  const poolImages = resize(tf.slice(trainTensors.images, 0, trainPool));
  const poolLabels = tf.slice(trainTensors.labels, 0, trainPool);
  const test = {
    x: resize(tf.slice(testTensors.images, 0, testRows)),
    y: tf.slice(testTensors.labels, 0, testRows),
  };
  // From the end of the training set: images no step trains on.
  const recalibration = resize(
    tf.slice(
      trainTensors.images,
      data.train.count - recalibrationBatches * RECALIBRATION_BATCH,
      recalibrationBatches * RECALIBRATION_BATCH,
    ),
  );
  tf.dispose([trainTensors.images, trainTensors.labels, testTensors.images, testTensors.labels]);
  const xs = await HostBatches.from(poolImages, 'x');
  const ys = await HostBatches.from(poolLabels, 'y');
  tf.dispose([poolImages, poolLabels]);
  log(
    `Fashion-MNIST: batches from ${trainPool} training images, ${testRows} test images; ` +
      `${seeds.length} seeds x ${ROBUST_STRATEGIES.length} strategies`,
  );

  const smallest: SubNetwork = { width: Math.min(...ROBUST_WIDTHS), depth: Math.min(...ROBUST_DEPTHS) };
  const largest: SubNetwork = {};
  const runtime = createRuntime({ plugins: [sortedNet()] });
  const graph = residualCnnGraph(runtime, {
    size: imageSize,
    widths: ROBUST_CNN_WIDTHS,
    blocks: ROBUST_CNN_BLOCKS,
  });
  const attack = { epsilon: ROBUST_EPSILON, steps: trainPgdSteps, training: true };
  const objective = robustDistillationObjective(ROBUST_DISTILLATION);
  const bar = progressBar('robust distillation', options.progress ?? true);
  const totalSteps = seeds.length * (warmupSteps + ROBUST_STRATEGIES.length * steps);
  let done = 0;
  const runs: RobustRun[] = [];
  let mflops = { smallest: 0, largest: 0 };

  /** `count` robust-distillation steps, the students of each from `students`, the learning rate on a cosine. */
  const train = async (model: Model, seed: number, count: number, students: Students, status: string) => {
    const optimizer = tf.train.adam(LEARNING_RATE);
    const trainer = new Trainer(model, { loss: objective, optimizer });
    // The batch order depends on the seed only: both strategies of a seed see the same batches.
    const rng = createRng(seed);
    let order = shuffledIndices(xs.size, rng);
    let position = 0;
    try {
      for (let step = 0; step < count; step++) {
        if (position + batchSize > xs.size) {
          order = shuffledIndices(xs.size, rng);
          position = 0;
        }
        const rows = order.subarray(position, position + batchSize);
        position += batchSize;
        const x = xs.batch(rows) as tf.Tensor;
        const y = ys.batch(rows) as tf.Tensor;
        trainer.setLearningRate((LEARNING_RATE / 2) * (1 + Math.cos((Math.PI * step) / count)));
        try {
          const windows = await robustDistillationWindows(model, { x, y }, students({ x, y }, step), {
            ...attack,
            seed: seed * 100_003 + step * 16,
          });
          try {
            const result = await trainer.stepWindows(windows.windows, { seed: step });
            bar.update(++done, { status: `${status} loss ${result.loss.toFixed(3)}` });
          } finally {
            windows.dispose();
          }
        } finally {
          tf.dispose([x, y]);
        }
      }
    } finally {
      trainer.dispose();
      optimizer.dispose();
    }
  };

  const measure = async (model: Model, seed: number, sub: SubNetwork): Promise<RobustMeasurement> => {
    const runOptions = subNetworkOptions(sub);
    // Statistics recomputed for this sub-network on held-out training images (a new model).
    const calibrated = await calibrateBatchNorm(
      model,
      [sub],
      { x: recalibration },
      { batchSize: RECALIBRATION_BATCH },
    );
    const result = await evaluateRobustness(calibrated, test, {
      epsilon: ROBUST_EPSILON,
      steps: EVAL_PGD_STEPS,
      options: runOptions,
      seed,
      batchSize: MEASURE_BATCH,
    }).finally(() => calibrated.dispose());
    return { clean: result.clean, pgd: result.robust };
  };

  try {
    bar.start(totalSteps, 0, { status: '' });
    for (const seed of seeds) {
      const plain = createModel(runtime, graph, { seed });
      // Channels stay in their initial order: importance sorting means nothing before training.
      const model = await nestModel(plain, { multiple: 2, sort: 'none' });
      plain.dispose();
      let warm: Map<tf.Variable, tf.Tensor> | undefined;
      try {
        if (runs.length === 0) {
          mflops = {
            smallest: await mflopsOf(model, recalibration, subNetworkOptions(smallest)),
            largest: await mflopsOf(model, recalibration, subNetworkOptions(largest)),
          };
        }
        const w0 = performance.now();
        await train(model, seed, warmupSteps, () => [subNetworkOptions(largest)], `seed ${seed} warm-up`);
        log(
          `seed ${seed}: ${warmupSteps} warm-up steps in ${((performance.now() - w0) / 1000).toFixed(0)} s`,
        );
        warm = snapshot(model);
        for (const strategy of ROBUST_STRATEGIES) {
          restore(warm);
          const students = studentsOf(strategy, studentsPerStep, steps, seed);
          const t0 = performance.now();
          await train(model, seed + 1, steps, students, `seed ${seed} ${strategy}`);
          const trainSeconds = (performance.now() - t0) / 1000;
          const m0 = performance.now();
          const run: RobustRun = {
            seed,
            strategy,
            smallest: await measure(model, seed, smallest),
            largest: await measure(model, seed, largest),
            train_seconds: trainSeconds,
          };
          runs.push(run);
          log(
            `seed ${seed} ${strategy}: smallest clean ${(run.smallest.clean * 100).toFixed(1)}% PGD ` +
              `${(run.smallest.pgd * 100).toFixed(1)}%, largest clean ${(run.largest.clean * 100).toFixed(1)}% ` +
              `PGD ${(run.largest.pgd * 100).toFixed(1)}% (trained in ${trainSeconds.toFixed(0)} s, measured in ` +
              `${((performance.now() - m0) / 1000).toFixed(0)} s)`,
          );
        }
      } finally {
        if (warm) tf.dispose([...warm.values()]);
        model.dispose();
      }
    }
  } finally {
    bar.stop();
    tf.dispose([test.x, test.y, recalibration]);
  }

  const summaryOf = (strategy: RobustStrategy): RobustSummary => {
    const mine = runs.filter((r) => r.strategy === strategy);
    const of = (pick: (r: RobustRun) => number) => spreadOf(mine.map(pick));
    return {
      smallest: { clean: of((r) => r.smallest.clean), pgd: of((r) => r.smallest.pgd) },
      largest: { clean: of((r) => r.largest.clean), pgd: of((r) => r.largest.pgd) },
    };
  };
  const summary = { progressive: summaryOf('progressive'), random: summaryOf('random') };
  const compare = (which: 'smallest' | 'largest') => {
    const progressive = summary.progressive[which].pgd.mean;
    const random = summary.random[which].pgd.mean;
    return { progressive, random, met: progressive >= random };
  };
  const smallestGoal = compare('smallest');
  const largestGoal = compare('largest');
  const result: BenchSortedNetRobustResult = {
    setup: {
      dataset: 'fashion-mnist',
      image_size: imageSize,
      train_pool: trainPool,
      test_rows: testRows,
      batch_size: batchSize,
      warmup_steps: warmupSteps,
      steps,
      students_per_step: studentsPerStep,
      epsilon: ROBUST_EPSILON,
      train_pgd_steps: trainPgdSteps,
      eval_pgd_steps: EVAL_PGD_STEPS,
      temperature: ROBUST_DISTILLATION.temperature,
      alpha: ROBUST_DISTILLATION.alpha,
      cnn_widths: [...ROBUST_CNN_WIDTHS],
      cnn_blocks: ROBUST_CNN_BLOCKS,
      widths: [...ROBUST_WIDTHS],
      depths: [...ROBUST_DEPTHS],
      smallest,
      largest,
      mflops,
      seeds,
    },
    runs,
    summary,
    goal: {
      met: smallestGoal.met && largestGoal.met,
      smallest_pgd: smallestGoal,
      largest_pgd: largestGoal,
    },
    seconds: (performance.now() - started) / 1000,
  };
  const svg = await lineChartSvg({
    title: `Fashion-MNIST nested residual CNN: accuracy (mean of ${seeds.length} seeds) vs compute`,
    xLabel: 'MFLOPs per image (smallest, largest sub-network)',
    yLabel: 'accuracy (%)',
    series: ROBUST_STRATEGIES.flatMap((strategy) =>
      (['pgd', 'clean'] as const).map((kind) => ({
        name: `${strategy}, ${kind === 'pgd' ? `PGD-${EVAL_PGD_STEPS}` : 'clean'}`,
        points: [
          { x: mflops.smallest, y: summary[strategy].smallest[kind].mean * 100 },
          { x: mflops.largest, y: summary[strategy].largest[kind].mean * 100 },
        ],
      })),
    ),
  });
  const reportDir = await writeReport(options.out ?? 'reports/sorted-net-robust', {
    'runs.json': `${JSON.stringify(runs, null, 2)}\n`,
    'accuracy.svg': svg,
  });
  return { result, reportDir };
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
const spreadText = (s: Spread) =>
  `${pct(s.mean)} ± ${(s.std * 100).toFixed(1)} (${(s.min * 100).toFixed(1)}–${(s.max * 100).toFixed(1)})`;

/** The run as markdown: the setup, per strategy mean ± std (min–max) over seeds, per seed, and the goal. */
export function benchSortedNetRobustMarkdown(run: BenchSortedNetRobustRun, head: BenchHead): string {
  const { setup, summary, runs, goal } = run.result;
  const key = (sub: SubNetwork) =>
    sub.width === undefined && sub.depth === undefined ? 'full' : `width ${sub.width}, depth ${sub.depth}`;
  return [
    `${measuredOn(head)}. Fashion-MNIST at ${setup.image_size}x${setup.image_size}` +
      `${setup.image_size === 14 ? ' (2x2 means of the originals)' : ''}; a residual CNN (stages of ${setup.cnn_widths.join(' and ')} channels, ` +
      `${setup.cnn_blocks} blocks each) nested over widths ${setup.widths.join('/')} and depths ` +
      `${setup.depths.join('/')}; per seed ${setup.warmup_steps} shared warm-up steps of the largest network, then ` +
      `${setup.steps} steps per strategy (batch ${setup.batch_size}, the teacher on clean images and ` +
      `${setup.students_per_step} students on PGD-${setup.train_pgd_steps} images, KL at temperature ` +
      `${setup.temperature} weighted ${setup.alpha} plus cross-entropy), batches from ${setup.train_pool.toLocaleString('en-US')} ` +
      `training images. Measured on the first ${setup.test_rows} test images after batch-norm recalibration: ` +
      `PGD-${setup.eval_pgd_steps}, epsilon 8/255, random start. Smallest = ${key(setup.smallest)} ` +
      `(${setup.mflops.smallest.toFixed(2)} MFLOPs), largest = ${key(setup.largest)} ` +
      `(${setup.mflops.largest.toFixed(2)} MFLOPs). Mean ± std (min–max) over seeds ${setup.seeds.join(', ')}; ` +
      `${run.result.seconds.toFixed(0)} s in all.`,
    '',
    markdownTable(
      ['strategy', 'smallest clean', 'smallest PGD', 'largest clean', 'largest PGD'],
      ROBUST_STRATEGIES.map((strategy) => [
        strategy,
        spreadText(summary[strategy].smallest.clean),
        spreadText(summary[strategy].smallest.pgd),
        spreadText(summary[strategy].largest.clean),
        spreadText(summary[strategy].largest.pgd),
      ]),
    ),
    '',
    markdownTable(
      ['seed', 'strategy', 'smallest clean', 'smallest PGD', 'largest clean', 'largest PGD', 'train s'],
      runs.map((r) => [
        r.seed,
        r.strategy,
        pct(r.smallest.clean),
        pct(r.smallest.pgd),
        pct(r.largest.clean),
        pct(r.largest.pgd),
        r.train_seconds.toFixed(0),
      ]),
    ),
    '',
    `Goal (progressive >= random in mean PGD accuracy of the smallest and the largest): ` +
      `${goal.met ? 'met' : 'not met'}: smallest ${pct(goal.smallest_pgd.progressive)} vs ` +
      `${pct(goal.smallest_pgd.random)} (${goal.smallest_pgd.met}), largest ` +
      `${pct(goal.largest_pgd.progressive)} vs ${pct(goal.largest_pgd.random)} (${goal.largest_pgd.met}).`,
  ].join('\n');
}
