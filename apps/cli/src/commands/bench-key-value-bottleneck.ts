import { useBackend } from '@dynn/core';
import { type ClassIncrementalResult, runClassIncremental } from '@dynn/moe-router';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { loadFashionMnist } from '../fashion-mnist.js';
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { type Spread, spreadOf } from '../spread.js';

/** Fashion-MNIST as five tasks of two classes, in class order (the paper's split of CIFAR-10). */
export const CLASS_INCREMENTAL_TASKS: readonly (readonly number[])[] = [
  [0, 1],
  [2, 3],
  [4, 5],
  [6, 7],
  [8, 9],
];

/** Options of `dynn bench moe-router kv-bottleneck`. */
export interface BenchKeyValueBottleneckOptions {
  /** Seeds: one autoencoder, key set and pair of arms per seed (default 1, 2, 3). */
  seeds?: readonly number[];
  /** Training images (the first N of the 60,000; default 12,000). */
  trainImages?: number;
  /** Test images (the first N of the 10,000; default 10,000). */
  testImages?: number;
  /** Autoencoder epochs (default 5). */
  encoderEpochs?: number;
  /** Epochs of each arm on each task (default 3). */
  taskEpochs?: number;
  /** Folder for result.json and the chart (default `reports/moe-router-kv`). */
  out?: string;
  /** Show a progress bar (default true). */
  progress?: boolean;
}

/** `--quick`: a smoke-sized run (CI), not a measurement to quote. */
export const QUICK_BENCH_KEY_VALUE_BOTTLENECK: BenchKeyValueBottleneckOptions = {
  seeds: [1],
  trainImages: 500,
  testImages: 300,
  encoderEpochs: 1,
  taskEpochs: 1,
};

/** One arm over the seeds. */
export interface ArmSummary {
  /** Accuracy on all ten classes after the last task. */
  final_accuracy: Spread;
  /** Mean forgetting over the first four tasks. */
  mean_forgetting: Spread;
  /** Forgetting of each of the first four tasks (mean over seeds). */
  forgetting_per_task: number[];
  /** Accuracy when trained on every task at once (the i.i.d. bound). */
  joint_accuracy: Spread;
}

/** The fields `dynn bench moe-router kv-bottleneck --json` adds to the bench envelope. */
export interface BenchKeyValueBottleneckResult {
  /** What was trained and measured. */
  setup: {
    /** The data set. */
    dataset: 'fashion-mnist';
    /** The tasks in training order. */
    tasks: number[][];
    /** Training and test images used. */
    train_images: number;
    /** Test images measured. */
    test_images: number;
    /** Autoencoder epochs (no labels). */
    encoder_epochs: number;
    /** Epochs per task and arm. */
    task_epochs: number;
    /** Seeds. */
    seeds: number[];
  };
  /** The key-value bottleneck and the fine-tuned linear probe, over the seeds. */
  summary: { key_value: ArmSummary; probe: ArmSummary };
  /** Every seed's full result. */
  runs: { seed: number; result: ClassIncrementalResult }[];
  /** The paper's finding: the bottleneck forgets less and ends more accurate than the probe. */
  finding: { key_value_forgets_less: boolean; key_value_more_accurate: boolean };
  /** Wall-clock seconds of the whole bench. */
  seconds: number;
}

/** The result with the folder it wrote. */
export interface BenchKeyValueBottleneckRun {
  /** What was measured. */
  result: BenchKeyValueBottleneckResult;
  /** Where result.json and the chart went. */
  reportDir: string;
}

function summarise(arms: readonly ClassIncrementalResult['probe'][]): ArmSummary {
  const tasks = arms[0]!.forgetting.length;
  return {
    final_accuracy: spreadOf(arms.map((a) => a.finalAccuracy)),
    mean_forgetting: spreadOf(arms.map((a) => a.meanForgetting)),
    forgetting_per_task: Array.from(
      { length: tasks },
      (_, t) => spreadOf(arms.map((a) => a.forgetting[t]!)).mean,
    ),
    joint_accuracy: spreadOf(arms.map((a) => a.jointAccuracy ?? Number.NaN)),
  };
}

/**
 * The class-incremental experiment of the discrete key-value bottleneck (Träuble et al. 2023) on
 * Fashion-MNIST, on wasm: per seed, an autoencoder trained on the training images without labels
 * gives frozen features; a key-value bottleneck (keys by k-means, values trained) and a linear
 * probe, both fine-tuned task by task over five tasks of two classes, are measured on every task
 * after each one: accuracy on all classes after the last task and forgetting per task.
 */
export async function runBenchKeyValueBottleneck(
  options: BenchKeyValueBottleneckOptions = {},
  log: (line: string) => void = () => {},
): Promise<BenchKeyValueBottleneckRun> {
  const started = performance.now();
  const seeds = [...(options.seeds ?? [1, 2, 3])];
  const encoderEpochs = options.encoderEpochs ?? 5;
  const taskEpochs = options.taskEpochs ?? 3;
  await useBackend('wasm');
  const data = await loadFashionMnist();
  const trainImages = Math.min(options.trainImages ?? 12_000, data.train.count);
  const testImages = Math.min(options.testImages ?? 10_000, data.test.count);
  const train = data.train.toTensors();
  const test = data.test.toTensors();
  const slice = (t: tf.Tensor, rows: number) => tf.slice(t, 0, rows);
  const trainX = slice(train.images, trainImages);
  const trainY = slice(train.labels, trainImages);
  const testX = slice(test.images, testImages);
  const testY = slice(test.labels, testImages);
  tf.dispose([train.images, train.labels, test.images, test.labels]);
  const tasks = CLASS_INCREMENTAL_TASKS.map((t) => [...t]);
  const runs: { seed: number; result: ClassIncrementalResult }[] = [];
  // Stages per seed: the autoencoder's epochs, the keys, each arm's tasks (and its joint run).
  const bar = progressBar('class-incremental', options.progress ?? true);
  const perSeed = encoderEpochs + 1 + 2 * tasks.length;
  bar.start(seeds.length * perSeed, 0, { status: '' });
  try {
    for (const [i, seed] of seeds.entries()) {
      const offset = {
        autoencoder: 0,
        keys: encoderEpochs,
        keyValue: encoderEpochs + 1,
        probe: encoderEpochs + 1 + tasks.length,
      };
      const result = await runClassIncremental({
        trainImages: trainX,
        trainLabels: trainY,
        testImages: testX,
        testLabels: testY,
        tasks,
        encoderEpochs,
        taskEpochs,
        seed,
        progress: (event) => {
          bar.update(i * perSeed + offset[event.stage] + event.done, {
            status: `seed ${seed}: ${event.stage} ${event.done}/${event.of}`,
          });
        },
      });
      runs.push({ seed, result });
      log(
        `seed ${seed}: key-value ${(result.keyValue.finalAccuracy * 100).toFixed(1)}% (forgetting ${(result.keyValue.meanForgetting * 100).toFixed(1)} pp), ` +
          `probe ${(result.probe.finalAccuracy * 100).toFixed(1)}% (forgetting ${(result.probe.meanForgetting * 100).toFixed(1)} pp)`,
      );
    }
  } finally {
    bar.stop();
    tf.dispose([trainX, trainY, testX, testY]);
  }
  const keyValue = summarise(runs.map((r) => r.result.keyValue));
  const probe = summarise(runs.map((r) => r.result.probe));
  const seenSeries = (name: string, pick: (r: ClassIncrementalResult) => number[]) => ({
    name,
    points: tasks.map((_, t) => ({ x: t + 1, y: spreadOf(runs.map((r) => pick(r.result)[t]!)).mean })),
  });
  const svg = await lineChartSvg({
    title: 'Class-incremental Fashion-MNIST: accuracy on the tasks seen so far',
    xLabel: 'tasks learned (2 classes each)',
    yLabel: 'accuracy (mean over seeds)',
    series: [
      seenSeries('key-value bottleneck', (r) => r.keyValue.seenAccuracy),
      seenSeries('fine-tuned linear probe', (r) => r.probe.seenAccuracy),
    ],
  });
  const result: BenchKeyValueBottleneckResult = {
    setup: {
      dataset: 'fashion-mnist',
      tasks,
      train_images: trainImages,
      test_images: testImages,
      encoder_epochs: encoderEpochs,
      task_epochs: taskEpochs,
      seeds,
    },
    summary: { key_value: keyValue, probe },
    runs,
    finding: {
      key_value_forgets_less: keyValue.mean_forgetting.mean < probe.mean_forgetting.mean,
      key_value_more_accurate: keyValue.final_accuracy.mean > probe.final_accuracy.mean,
    },
    seconds: (performance.now() - started) / 1000,
  };
  const reportDir = await writeReport(options.out ?? 'reports/moe-router-kv', { 'seen-accuracy.svg': svg });
  return { result, reportDir };
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
const spreadText = (s: Spread) => `${pct(s.mean)} ± ${(s.std * 100).toFixed(1)}`;

/** The run as markdown: the setup, both arms over the seeds, forgetting per task. */
export function benchKeyValueBottleneckMarkdown(run: BenchKeyValueBottleneckRun, head: BenchHead): string {
  const { setup, summary, finding } = run.result;
  const arms = [
    ['key-value bottleneck', summary.key_value],
    ['fine-tuned linear probe', summary.probe],
  ] as const;
  return [
    `${measuredOn(head)}. Fashion-MNIST as ${setup.tasks.length} tasks of two classes (${setup.tasks.map((t) => t.join('/')).join(', ')}), ` +
      `the first ${setup.train_images.toLocaleString('en-US')} training and ${setup.test_images.toLocaleString('en-US')} test images; ` +
      `features from an autoencoder trained ${setup.encoder_epochs} epochs without labels; each arm trained ${setup.task_epochs} epochs per task, ` +
      `class-incremental (predictions over all ten classes, no task given). Mean ± std over seeds ${setup.seeds.join(', ')}; ` +
      `${run.result.seconds.toFixed(0)} s in all.`,
    '',
    markdownTable(
      [
        'arm',
        'accuracy after the last task',
        'mean forgetting',
        ...setup.tasks.slice(0, -1).map((_, t) => `forgetting task ${t + 1}`),
        'all tasks at once',
      ],
      arms.map(([name, s]) => [
        name,
        spreadText(s.final_accuracy),
        spreadText(s.mean_forgetting),
        ...s.forgetting_per_task.map(pct),
        spreadText(s.joint_accuracy),
      ]),
    ),
    '',
    `The bottleneck forgets ${finding.key_value_forgets_less ? 'less' : 'more'} than the probe and ends ` +
      `${finding.key_value_more_accurate ? 'more' : 'less'} accurate.`,
  ].join('\n');
}
