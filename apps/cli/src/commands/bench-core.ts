import {
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  type Model,
  type Runtime,
  Trainer,
  useBackend,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { DEMO_CNN_FILTERS, demoCnnGraph, mlpGraph } from '../demo-models.js';
import { markdownTable } from '../report-files.js';
import { type TimingOptions, timeMedian, timeSideBySide } from '../timing.js';

/** One measured case. `tfjs_ms` is null (and `tfjs_error` set) when tfjs-layers cannot run it. */
export interface BenchCoreRow {
  model: string;
  case: string;
  dynn_ms: number;
  tfjs_ms: number | null;
  ratio: number | null;
  tfjs_error: string | null;
}

/**
 * One case of the executor-overhead row: a deep chain of tiny nodes, so per-node costs dominate.
 * dynn against tfjs-layers (`ratio`) and against the same ops in one hand-written `tf.tidy`
 * (`tidy_ratio`), each with its goal and whether it is met.
 */
export interface BenchOverheadRow {
  model: string;
  case: string;
  /** Whether dynn built its compute report (`model.run(x, { report })`). */
  report: boolean;
  dynn_ms: number;
  tfjs_ms: number;
  tidy_ms: number;
  /** dynn / tfjs-layers. */
  ratio: number;
  /** dynn / the hand-written tf.tidy chain. */
  tidy_ratio: number;
  ratio_goal_met: boolean;
  tidy_ratio_goal_met: boolean;
}

/** The goals of the executor-overhead row: the largest ratios that meet them. */
export const OVERHEAD_GOALS = { ratio: 1.1, tidy_ratio: 1.5 } as const;

/** Nodes and width of the executor-overhead row's chain. */
export const OVERHEAD_DEPTH = 200;
export const OVERHEAD_WIDTH = 16;
const OVERHEAD_MODEL = `${OVERHEAD_DEPTH} tiny nodes (executor overhead)`;

/** The fields `dynn bench core --json` adds to the bench envelope. */
export interface BenchCoreResult {
  results: BenchCoreRow[];
  /** The executor-overhead row: a case per batch size and report setting. */
  overhead: BenchOverheadRow[];
  /** Its goals. */
  overhead_goals: typeof OVERHEAD_GOALS;
}

/** Options of {@link runBenchCore}. */
export interface BenchCoreOptions {
  /** Milliseconds spent timing each batch size of the executor-overhead row at least (default 2000). */
  overheadMs?: number;
}

/** The same architecture as a tfjs-layers model, with the dynn model's weights copied in. */
function layersTwin(name: 'mlp' | 'cnn', model: Model): tfl.Sequential {
  const twin = tfl.sequential();
  if (name === 'mlp') {
    twin.add(tfl.layers.dense({ units: 512, activation: 'relu', inputShape: [784] }));
    twin.add(tfl.layers.dense({ units: 512, activation: 'relu' }));
  } else {
    for (const [i, filters] of DEMO_CNN_FILTERS.entries()) {
      twin.add(
        tfl.layers.conv2d({
          filters,
          kernelSize: 3,
          padding: 'same',
          activation: 'relu',
          ...(i === 0 ? { inputShape: [28, 28, 1] } : {}),
        }),
      );
      twin.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
    }
    twin.add(tfl.layers.flatten());
  }
  twin.add(tfl.layers.dense({ units: 10 }));
  // dynn stores kernel then bias per node, in node order: the same order as tfjs-layers' weights.
  twin.setWeights([...model.params.values()]);
  twin.compile({
    optimizer: tf.train.adam(1e-3),
    // The same objective as dynn's: softmax cross-entropy on logits (targets one-hot for tfjs-layers).
    loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred),
  });
  return twin;
}

async function readBack(t: tf.Tensor | tf.Tensor[]): Promise<void> {
  const list = Array.isArray(t) ? t : [t];
  for (const item of list) {
    await item.data();
    item.dispose();
  }
}

/**
 * Measures the MLP (784-512-512-10) and the demo CNN built in dynn and in tfjs-layers, side by
 * side in one process on the active backend: inference at batch 1 and 256 and one training step
 * at batch 64 (Adam). Reports medians after warm-up and the dynn / tfjs-layers ratio. Then the
 * executor-overhead row (see {@link runOverhead}).
 */
export async function runBenchCore(
  timing: TimingOptions,
  onProgress: (label: string) => void = () => {},
  { overheadMs = 2000 }: BenchCoreOptions = {},
): Promise<BenchCoreResult> {
  await useBackend('wasm');
  const runtime = createRuntime();
  const rows: BenchCoreRow[] = [];
  const cases: Array<{ name: 'mlp' | 'cnn'; label: string; graph: Graph; shape: number[] }> = [
    { name: 'mlp', label: 'MLP 784-512-512-10', graph: mlpGraph(runtime), shape: [784] },
    {
      name: 'cnn',
      label: `demo CNN (conv ${DEMO_CNN_FILTERS.join('-')})`,
      graph: demoCnnGraph(runtime),
      shape: [28, 28, 1],
    },
  ];
  for (const { name, label, graph, shape } of cases) {
    const model = createModel(runtime, graph, { seed: 1 });
    const twin = layersTwin(name, model);
    const trainer = new Trainer(model, { optimizer: tf.train.adam(1e-3) });
    for (const batch of [1, 256]) {
      onProgress(`${label}: inference, batch ${batch}`);
      const x = tf.randomUniform([batch, ...shape], 0, 1, 'float32', 7);
      const [dynn, tfjs] = (await timeSideBySide(
        [
          async () => readBack(await model.predict(x)),
          async () => readBack(twin.predict(x, { batchSize: batch }) as tf.Tensor),
        ],
        { ...timing, minTotalMs: 2000 },
      )) as [number, number];
      rows.push({
        model: label,
        case: `inference, batch ${batch}`,
        dynn_ms: dynn,
        tfjs_ms: tfjs,
        ratio: dynn / tfjs,
        tfjs_error: null,
      });
      x.dispose();
    }
    onProgress(`${label}: training step, batch 64`);
    const x = tf.randomUniform([64, ...shape], 0, 1, 'float32', 8);
    const y = tf.tensor1d(
      Int32Array.from({ length: 64 }, (_, i) => i % 10),
      'int32',
    );
    const oneHot = tf.oneHot(y, 10);
    const dynnStep = async () => {
      await trainer.step(x, y);
    };
    const tfjsStep = async () => {
      await twin.trainOnBatch(x, oneHot);
    };
    let dynn: number;
    let tfjs: number | null = null;
    let error: string | null = null;
    try {
      await tfjsStep();
      [dynn, tfjs] = (await timeSideBySide([dynnStep, tfjsStep], timing)) as [number, number];
    } catch (caught) {
      // tfjs-layers cannot train this model here: time dynn alone and report why.
      error = (caught as Error).message.split('\n')[0]!;
      dynn = await timeMedian(dynnStep, timing);
    }
    rows.push({
      model: label,
      case: 'training step, batch 64',
      dynn_ms: dynn,
      tfjs_ms: tfjs,
      ratio: tfjs === null ? null : dynn / tfjs,
      tfjs_error: error,
    });
    tf.dispose([x, y, oneHot]);
    trainer.dispose();
    twin.dispose();
    model.dispose();
  }
  const overhead = await runOverhead(runtime, { ...timing, minTotalMs: overheadMs }, onProgress);
  return { results: rows, overhead, overhead_goals: OVERHEAD_GOALS };
}

/** A chain of `OVERHEAD_DEPTH` `core.Dense` `OVERHEAD_WIDTH`->`OVERHEAD_WIDTH` relu nodes. */
function tinyChainGraph(runtime: Runtime): Graph {
  const b = new GraphBuilder(runtime);
  let h = b.input('x', 'float32', ['batch', OVERHEAD_WIDTH]);
  for (let i = 0; i < OVERHEAD_DEPTH; i++) {
    h = b.add('core.Dense', h, { units: OVERHEAD_WIDTH, activation: 'relu' }, { name: `dense${i + 1}` });
  }
  return b.build({ y: h });
}

/** Largest absolute difference between two tensors, relative to `a`'s largest magnitude. */
function relativeGap(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => {
    const gap = tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;
    const scale = tf.max(tf.abs(a)).dataSync()[0]!;
    return scale > 0 ? gap / scale : gap;
  });
}

/**
 * The executor-overhead row: a chain of 200 tiny Dense nodes, where an interpreter's per-node
 * costs (bookkeeping, the compute report) weigh most against the ops themselves. dynn with the
 * report off and on, against a tfjs-layers twin (the same weights) and against the same ops
 * written by hand in one `tf.tidy`, at batch 1 and 256.
 */
async function runOverhead(
  runtime: Runtime,
  timing: TimingOptions,
  onProgress: (label: string) => void,
): Promise<BenchOverheadRow[]> {
  const model = createModel(runtime, tinyChainGraph(runtime), { seed: 1 });
  // He scaling (Glorot * sqrt 2): with plain Glorot each relu layer halves the signal's energy
  // (about 1e-30 after 200 layers); this keeps the output in the normal float32 range.
  const weights = [...model.params.values()];
  for (const [i, w] of weights.entries()) {
    if (i % 2 === 0) w.assign(tf.tidy(() => tf.mul(w, Math.SQRT2)));
  }
  const twin = tfl.sequential();
  for (let i = 0; i < OVERHEAD_DEPTH; i++) {
    twin.add(
      tfl.layers.dense({
        units: OVERHEAD_WIDTH,
        activation: 'relu',
        ...(i === 0 ? { inputShape: [OVERHEAD_WIDTH] } : {}),
      }),
    );
  }
  // Kernel then bias per node, in node order: the order of tfjs-layers' weights.
  twin.setWeights(weights);
  // The same ops as dynn's core.Dense in inference and tfjs-layers' Dense: one fused
  // matMul + bias + relu per layer (both fuse the activation when no gradient is taped).
  const chain = (x: tf.Tensor2D) =>
    tf.tidy(() => {
      let h: tf.Tensor = x;
      for (let i = 0; i < OVERHEAD_DEPTH; i++) {
        h = tf.fused.matMul({
          a: h as tf.Tensor2D,
          b: weights[2 * i] as tf.Tensor2D,
          bias: weights[2 * i + 1]!,
          activation: 'relu',
        });
      }
      return h;
    });
  const rows: BenchOverheadRow[] = [];
  for (const batch of [1, 256]) {
    const x = tf.randomUniform([batch, OVERHEAD_WIDTH], 0, 1, 'float32', 9) as tf.Tensor2D;
    // tfjs-layers' predict splits a batch into batches of 32 unless told: one pass here, as dynn does.
    const layersPredict = () => twin.predict(x, { batchSize: batch }) as tf.Tensor;
    const dynnRun = async (report: boolean) => {
      const { outputs } = await model.run(x, { report });
      return outputs.y!;
    };
    // The three must compute the same thing (within 1e-5, relative) before their times mean anything.
    const expected = await dynnRun(true);
    for (const [name, got] of [
      ['tfjs-layers', layersPredict()],
      ['the tf.tidy chain', chain(x)],
    ] as const) {
      const gap = relativeGap(expected, got);
      got.dispose();
      if (!(gap <= 1e-5)) {
        expected.dispose();
        throw new Error(`${OVERHEAD_MODEL}: dynn and ${name} disagree by ${gap} at batch ${batch}`);
      }
    }
    expected.dispose();
    onProgress(`${OVERHEAD_MODEL}: inference, batch ${batch}`);
    const [off, on, layers, tidy] = (await timeSideBySide(
      [
        async () => readBack(await dynnRun(false)),
        async () => readBack(await dynnRun(true)),
        async () => readBack(layersPredict()),
        async () => readBack(chain(x)),
      ],
      timing,
    )) as [number, number, number, number];
    for (const [report, dynn] of [
      [false, off],
      [true, on],
    ] as const) {
      rows.push({
        model: OVERHEAD_MODEL,
        case: `inference, batch ${batch}`,
        report,
        dynn_ms: dynn,
        tfjs_ms: layers,
        tidy_ms: tidy,
        ratio: dynn / layers,
        tidy_ratio: dynn / tidy,
        ratio_goal_met: dynn / layers <= OVERHEAD_GOALS.ratio,
        tidy_ratio_goal_met: dynn / tidy <= OVERHEAD_GOALS.tidy_ratio,
      });
    }
    x.dispose();
  }
  twin.dispose();
  model.dispose();
  return rows;
}

/** The results as the markdown table docs/benchmarks.md shows. */
export function benchCoreMarkdown(result: BenchCoreResult, head: BenchHead): string {
  const ms = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  return [
    `${measuredOn(head)}; medians after warm-up.`,
    '',
    markdownTable(
      ['model', 'case', 'dynn (ms)', 'tfjs-layers (ms)', 'dynn / tfjs-layers'],
      result.results.map((r) => [
        r.model,
        r.case,
        ms(r.dynn_ms),
        r.tfjs_ms === null ? `fails: \`${r.tfjs_error}\`` : ms(r.tfjs_ms),
        r.ratio === null ? 'n/a' : r.ratio.toFixed(2),
      ]),
    ),
    '',
    `Executor overhead: ${OVERHEAD_DEPTH} \`core.Dense\` ${OVERHEAD_WIDTH}->${OVERHEAD_WIDTH} relu nodes in a chain, ` +
      'against a tfjs-layers twin and against the same ops (a fused matMul + bias + relu per layer) ' +
      `in one hand-written \`tf.tidy\`. Goals: dynn / tfjs-layers <= ${OVERHEAD_GOALS.ratio}, ` +
      `dynn / tf.tidy chain <= ${OVERHEAD_GOALS.tidy_ratio}.`,
    '',
    markdownTable(
      [
        'model',
        'case',
        'report',
        'dynn (ms)',
        'tfjs-layers (ms)',
        'tf.tidy chain (ms)',
        `dynn / tfjs-layers (goal <= ${OVERHEAD_GOALS.ratio})`,
        `dynn / tf.tidy chain (goal <= ${OVERHEAD_GOALS.tidy_ratio})`,
      ],
      result.overhead.map((r) => [
        r.model,
        r.case,
        r.report ? 'on' : 'off',
        ms(r.dynn_ms),
        ms(r.tfjs_ms),
        ms(r.tidy_ms),
        `${r.ratio.toFixed(2)} (${r.ratio_goal_met ? 'met' : 'missed'})`,
        `${r.tidy_ratio.toFixed(2)} (${r.tidy_ratio_goal_met ? 'met' : 'missed'})`,
      ]),
    ),
  ].join('\n');
}
