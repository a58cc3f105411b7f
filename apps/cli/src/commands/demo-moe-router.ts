import {
  cosineDecay,
  createModel,
  createRuntime,
  fit,
  type Graph,
  GraphBuilder,
  type Model,
  type Runtime,
  useBackend,
} from '@dynn/core';
import { addMoeLayer, moeOptions, moeRouter } from '@dynn/moe-router';
import * as tf from '@tensorflow/tfjs-core';
import { batchesOf, runEach } from '../exit-runs.js';
import { loadFashionMnist } from '../fashion-mnist.js';
import { heatmapSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';

/** Options of `dynn demo moe-router`. */
export interface DemoMoeRouterOptions {
  /** Training images (default 30,000). */
  trainLimit?: number;
  /** Test images measured (default 10,000: all). */
  testLimit?: number;
  /** Training epochs (default 3). */
  epochs?: number;
  /** The inference capacity factor compared with dropless (default 1). */
  capacity?: number;
  /** Test images timed at batch 256 (default 2,048). */
  timedImages?: number;
  /** Timed passes per setting (default 3). */
  repeats?: number;
  /** Folder for the report (default `reports/demo-moe-router`). */
  out?: string;
  /** Draw progress bars (default true). */
  progress?: boolean;
}

/** `--quick`: a smoke-sized run of a few seconds. */
export const QUICK_DEMO_MOE_ROUTER: DemoMoeRouterOptions = {
  trainLimit: 512,
  testLimit: 256,
  epochs: 1,
  timedImages: 256,
  repeats: 1,
};

/** Experts in the demo's layer, and experts per image. */
export const DEMO_EXPERTS = 8;
export const DEMO_K = 2;
/** Features per image token, and hidden units of each feed-forward expert. */
const DEMO_WIDTH = 64;
const DEMO_EXPERT_HIDDEN = 64;
/** Training capacity factor and load-balancing loss weight. */
const DEMO_TRAIN_CAPACITY = 1.25;
const DEMO_BALANCE_LOSS = 0.01;
/** Images per inference batch: a batch is the group whose tokens share the experts' capacity. */
const MEASURE_BATCH = 256;

/**
 * The demo's model: each 28x28 image, flattened, is one token of 64 features (`embed`), then a
 * mixture of 8 feed-forward experts (64 -> 64 -> 64) routes it to its top 2 (node `moe`), a
 * residual connection adds the token back, and a linear classifier reads the 10 classes.
 */
export function moeMlpGraph(runtime: Runtime): Graph {
  const b = new GraphBuilder(runtime);
  const pixels = b.input('pixels', 'float32', ['batch', 28, 28, 1]);
  const flat = b.add('core.Flatten', pixels, {}, { name: 'flatten' });
  const token = b.add('core.Dense', flat, { units: DEMO_WIDTH, activation: 'relu' }, { name: 'embed' });
  const moe = addMoeLayer(b, runtime, token, {
    name: 'moe',
    experts: DEMO_EXPERTS,
    expert: { hidden: DEMO_EXPERT_HIDDEN },
    router: 'top-k',
    k: DEMO_K,
    capacityFactor: DEMO_TRAIN_CAPACITY,
    balanceLoss: DEMO_BALANCE_LOSS,
  });
  const mixed = b.add('core.Add', [token, moe], {}, { name: 'residual' });
  return b.build({ logits: b.add('core.Dense', mixed, { units: 10 }, { name: 'classifier' }) });
}

/** One way of running the trained model (run options), measured on the test images. */
export interface DemoMoeRouterRow {
  setting: string;
  /** Experts per image. */
  k: number;
  /** Inference capacity factor; 0: dropless. */
  capacityFactor: number;
  accuracy: number;
  /** Image-expert pairs the capacity dropped, as a share of the pairs chosen. */
  droppedShare: number;
  /** Images no expert computed (the residual carried them), as a share of the images. */
  unroutedShare: number;
  /** MFLOPs per image the experts executed (their nodes in the compute reports). */
  expertMflops: number;
  /** MFLOPs per image of the whole run. */
  mflops: number;
  /** Median milliseconds per batch of 256, timed side by side with the other settings. */
  msPerBatch: number;
}

/** What the demo measured. */
export interface DemoMoeRouterResult {
  rows: DemoMoeRouterRow[];
  /** Share of the image-expert pairs each expert computed, dropless. */
  expertShare: number[];
  /** Per class (rows, in `classNames` order): how many of its test images each expert computed, dropless. */
  classLoad: number[][];
  classNames: string[];
  trainImages: number;
  testImages: number;
  trainSeconds: number;
  reportDir: string;
}

/** Accuracy, routing statistics and FLOPs over `x`, in batches of {@link MEASURE_BATCH}. */
async function measure(
  model: Model,
  x: tf.Tensor,
  labels: Int32Array,
  k: number,
  capacityFactor: number,
): Promise<Omit<DemoMoeRouterRow, 'setting' | 'msPerBatch'> & { classLoad: number[][] }> {
  const count = x.shape[0]!;
  const classLoad = Array.from({ length: 10 }, () => new Array<number>(DEMO_EXPERTS).fill(0));
  let correct = 0;
  let dropped = 0;
  let unrouted = 0;
  let expertFlops = 0;
  let flops = 0;
  for (let start = 0; start < count; start += MEASURE_BATCH) {
    const rows = Math.min(MEASURE_BATCH, count - start);
    const batch = tf.slice(x, start, rows);
    const { outputs, report } = await model.run(batch, {
      options: moeOptions({ k, capacityFactor, recordAssignment: true }),
    });
    const predicted = tf.argMax(outputs.logits!, -1);
    const p = await predicted.data();
    tf.dispose([batch, predicted, ...Object.values(outputs)]);
    for (let i = 0; i < rows; i++) if (p[i] === labels[start + i]) correct++;
    const stats = report!.nodes.find((n) => n.name === 'moe')!.stats;
    dropped += stats.dropped as number;
    unrouted += stats.unrouted as number;
    (stats.assignment as number[][]).forEach((experts, i) => {
      for (const e of experts) classLoad[labels[start + i]!]![e]!++;
    });
    for (const node of report!.nodes) if (node.name.startsWith('moe/experts/')) expertFlops += node.flops;
    flops += report!.flops;
  }
  return {
    k,
    capacityFactor,
    accuracy: correct / count,
    droppedShare: dropped / (count * k),
    unroutedShare: unrouted / count,
    expertMflops: expertFlops / count / 1e6,
    mflops: flops / count / 1e6,
    classLoad,
  };
}

/**
 * The heat map of which experts serve which classes: one row per class, one column per expert,
 * each cell the percentage of the class's test images the expert computed (a row sums to k x 100).
 */
export function expertClassSvg(
  title: string,
  classLoad: readonly (readonly number[])[],
  classNames: readonly string[],
): Promise<string> {
  return heatmapSvg({
    title,
    xLabel: 'expert',
    yLabel: 'class',
    rows: classNames.map((name, c) => name || String(c)),
    columns: Array.from({ length: DEMO_EXPERTS }, (_, e) => String(e)),
    values: classLoad.map((row) => {
      const images = row.reduce((a, b) => a + b, 0) / DEMO_K;
      return row.map((n) => (images > 0 ? (100 * n) / images : 0));
    }),
    digits: 0,
  });
}

/**
 * Trains a top-2-of-8 MoE MLP on Fashion-MNIST on wasm (each image one token), then measures it
 * on the test images dropless and at an inference capacity, and with one expert per image:
 * accuracy, per-expert load, dropped pairs, the experts' FLOPs from the compute reports and time
 * per batch of 256 side by side. Writes a markdown report, result.json and the heat map of which
 * experts serve which classes.
 */
export async function runDemoMoeRouter(
  options: DemoMoeRouterOptions,
  log: (line: string) => void,
): Promise<DemoMoeRouterResult> {
  await useBackend('wasm');
  const data = await loadFashionMnist();
  const trainAll = data.train.toTensors();
  const testAll = data.test.toTensors();
  const trainCount = Math.min(options.trainLimit ?? 30_000, data.train.count);
  const testCount = Math.min(options.testLimit ?? data.test.count, data.test.count);
  const train = { x: tf.slice(trainAll.images, 0, trainCount), y: tf.slice(trainAll.labels, 0, trainCount) };
  const test = { x: tf.slice(testAll.images, 0, testCount), y: tf.slice(testAll.labels, 0, testCount) };
  tf.dispose([trainAll.images, trainAll.labels, testAll.images, testAll.labels]);
  const capacity = options.capacity ?? 1;
  const epochs = options.epochs ?? 3;
  const batchSize = 64;
  const runtime = createRuntime({ plugins: [moeRouter()] });
  const model = createModel(runtime, moeMlpGraph(runtime), { seed: 1 });
  const batches: tf.Tensor[] = [];
  try {
    log(
      `training an MLP whose middle layer is ${DEMO_EXPERTS} feed-forward experts, top-${DEMO_K} per image ` +
        `(training capacity factor ${DEMO_TRAIN_CAPACITY}, balance loss ${DEMO_BALANCE_LOSS}), on ${trainCount} images for ${epochs} epoch(s)`,
    );
    const steps = epochs * Math.ceil(trainCount / batchSize);
    const bar = progressBar('training', options.progress ?? true);
    const optimizer = tf.train.adam(3e-3);
    const started = performance.now();
    let smoothed = Number.NaN;
    try {
      bar.start(steps, 0, { status: '' });
      await fit(model, train, {
        epochs,
        batchSize,
        optimizer,
        learningRate: cosineDecay(3e-3),
        seed: 1,
        callbacks: {
          onBatchEnd(step, logs) {
            smoothed = Number.isNaN(smoothed) ? logs.loss : 0.95 * smoothed + 0.05 * logs.loss;
            bar.update(logs.epoch * Math.ceil(trainCount / batchSize) + step + 1, {
              status: `epoch ${logs.epoch + 1} loss ${smoothed.toFixed(3)}`,
            });
          },
        },
      });
    } finally {
      bar.stop();
      optimizer.dispose();
    }
    const trainSeconds = (performance.now() - started) / 1000;

    const labels = Int32Array.from(await test.y.data());
    const settings = [
      { setting: `top-${DEMO_K}, dropless`, k: DEMO_K, capacityFactor: 0 },
      { setting: `top-${DEMO_K}, capacity factor ${capacity}`, k: DEMO_K, capacityFactor: capacity },
      { setting: 'top-1, dropless', k: 1, capacityFactor: 0 },
    ];
    log(`measuring ${settings.length} settings on ${testCount} test images (batches of ${MEASURE_BATCH})`);
    const measured: Awaited<ReturnType<typeof measure>>[] = [];
    for (const s of settings) measured.push(await measure(model, test.x, labels, s.k, s.capacityFactor));
    batches.push(...batchesOf(test.x, Math.min(options.timedImages ?? 2048, testCount), MEASURE_BATCH));
    const times = await timeSideBySide(
      settings.map((s) =>
        runEach(model, moeOptions({ k: s.k, capacityFactor: s.capacityFactor }), batches, false),
      ),
      { warmup: 1, repeats: options.repeats ?? 3 },
    );
    const rows: DemoMoeRouterRow[] = settings.map((s, i) => {
      const { classLoad: _, ...m } = measured[i]!;
      return { ...m, setting: s.setting, msPerBatch: times[i]! / batches.length };
    });
    const classLoad = measured[0]!.classLoad;
    const perExpert = Array.from({ length: DEMO_EXPERTS }, (_, e) =>
      classLoad.reduce((sum, row) => sum + row[e]!, 0),
    );
    const expertShare = perExpert.map((n) => n / (testCount * DEMO_K));
    const classNames = [...data.classNames];

    const svg = await expertClassSvg(
      `% of each class's images per expert (top-${DEMO_K} of ${DEMO_EXPERTS})`,
      classLoad,
      classNames,
    );
    const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
    const table = markdownTable(
      [
        'setting (run options)',
        'test accuracy',
        'pairs dropped',
        'images with no expert',
        'expert MFLOPs / image',
        'MFLOPs / image',
        'ms / batch 256',
      ],
      rows.map((r) => [
        r.setting,
        pct(r.accuracy),
        pct(r.droppedShare),
        pct(r.unroutedShare),
        r.expertMflops.toFixed(4),
        r.mflops.toFixed(4),
        r.msPerBatch.toFixed(1),
      ]),
    );
    const result = {
      rows,
      expertShare,
      classLoad,
      classNames,
      trainImages: trainCount,
      testImages: testCount,
      trainSeconds,
    };
    const reportDir = await writeReport(options.out ?? 'reports/demo-moe-router', {
      'README.md': [
        '# dynn demo: a mixture of experts that computes only the experts each image needs',
        '',
        `An MLP on Fashion-MNIST whose middle layer is ${DEMO_EXPERTS} feed-forward experts (${DEMO_WIDTH} -> ${DEMO_EXPERT_HIDDEN} -> ${DEMO_WIDTH}); ` +
          `a router sends each image to its top ${DEMO_K}. Trained on ${trainCount.toLocaleString('en-US')} images ` +
          `(${trainSeconds.toFixed(0)} s on ${tf.getBackend()}, training capacity factor ${DEMO_TRAIN_CAPACITY}, balance loss ${DEMO_BALANCE_LOSS}), ` +
          `then measured on ${testCount.toLocaleString('en-US')} test images in batches of ${MEASURE_BATCH}. Each row is the same weights run with ` +
          'other run options (`moeOptions({ k, capacityFactor })`). A dropped image-expert pair is not computed; an image with no expert ' +
          'keeps its embedding through the residual connection. FLOPs come from the compute reports; times are medians of side-by-side passes.',
        '',
        table,
        '',
        `Share of the image-expert pairs each expert computed (dropless): ${expertShare.map(pct).join(', ')} (even: ${pct(1 / DEMO_EXPERTS)}).`,
        '',
        "Which experts serve which classes: each cell is the percentage of the class's test images that the expert " +
          `computed (dropless, ${testCount.toLocaleString('en-US')} test images in all); a row sums to ${DEMO_K * 100}.`,
        '',
        '![which experts serve which classes](experts-by-class.svg)',
        '',
      ].join('\n'),
      'experts-by-class.svg': svg,
      'result.json': `${JSON.stringify(result, null, 2)}\n`,
    });
    return { ...result, reportDir };
  } finally {
    model.dispose();
    tf.dispose([...batches, train.x, train.y, test.x, test.y]);
  }
}
