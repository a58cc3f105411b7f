import {
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  gatherRows,
  type Model,
  type Runtime,
  scatterAddRows,
  segmentMax,
  segmentSum,
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

/**
 * One case of the sparse-ops row: a core sparse op (forward, or forward and backward) against
 * tfjs's own op, or, where that cannot run on the benchmark backend, against the same computation
 * written with `tf.scatterND` / `tf.gather` by hand (`tfjs_baseline` says which ran).
 */
export interface BenchSparseRow {
  /** The dynn op (`core.Gather`), timed through its exported function. */
  op: string;
  /** What is timed and on which shapes. */
  case: string;
  dynn_ms: number;
  /** The tfjs baseline's median, or null when tfjs has nothing to compare with. */
  tfjs_ms: number | null;
  /** dynn / tfjs baseline. */
  ratio: number | null;
  /** What the tfjs column ran. */
  tfjs_baseline: string;
  /** Why tfjs's own op did not run here (first line of its error), or null (it ran, or there is none). */
  tfjs_error: string | null;
}

/** Shapes of the sparse-ops row: `ROWS` rows of `WIDTH` features moved to or from `SEGMENTS` rows. */
export const SPARSE_SHAPES = { rows: 20_000, segments: 10_000, width: 64 } as const;

/** The fields `dynn bench core --json` adds to the bench envelope. */
export interface BenchCoreResult {
  results: BenchCoreRow[];
  /** The sparse-ops row: Gather, ScatterAdd and the segment reductions against tfjs. */
  sparse: BenchSparseRow[];
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
 * sparse-ops row (see {@link runSparse}) and the executor-overhead row (see {@link runOverhead}).
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
  const sparse = await runSparse(timing, onProgress);
  const overhead = await runOverhead(runtime, { ...timing, minTotalMs: overheadMs }, onProgress);
  return { results: rows, sparse, overhead, overhead_goals: OVERHEAD_GOALS };
}

/** A computation of the sparse-ops row: returns the tensors to read back (outputs, gradients). */
type SparseBody = () => tf.Tensor[];

/** A tfjs candidate for one case: tfjs's own op first, then hand-written equivalents. */
interface SparseCandidate {
  name: string;
  body: SparseBody;
}

/** `sum(f(inputs) * weights)`'s gradients with respect to `inputs`, and nothing else kept. */
function gradsOf(
  f: (...inputs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  weights: tf.Tensor,
): SparseBody {
  return () => tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), weights)))(inputs);
}

/** `tf.scatterND` of rows `[k, ...]` at `ids` into `rows` rows: the scatter-add tfjs has everywhere. */
function scatterNdRows(ids: tf.Tensor, updates: tf.Tensor, rows: number): tf.Tensor {
  return tf.scatterND(tf.reshape(ids, [ids.size, 1]), updates, [rows, ...updates.shape.slice(1)]);
}

/**
 * `tf.gather` whose gradient is a `tf.scatterND` (tf.customGrad): what a tfjs user writes where
 * tf.gather's own gradient (UnsortedSegmentSum) is missing.
 */
function gatherWithScatterGrad(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
  const op = tf.customGrad((...args: any[]) => {
    const [t, save] = args as [tf.Tensor, tf.GradSaveFunc];
    save([ids]);
    return {
      value: tf.gather(t, ids),
      gradFunc: (dy: tf.Tensor, [i]: tf.Tensor[]) => scatterNdRows(i!, dy, table.shape[0]!),
    };
  }) as unknown as (t: tf.Tensor) => tf.Tensor;
  return op(table);
}

/** `tf.scatterND` whose gradient is a `tf.gather` (tf.customGrad): a segment sum tfjs can train. */
function scatterWithGatherGrad(ids: tf.Tensor, rows: number): (updates: tf.Tensor) => tf.Tensor {
  // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
  return tf.customGrad((...args: any[]) => {
    const [u, save] = args as [tf.Tensor, tf.GradSaveFunc];
    save([ids]);
    return {
      value: scatterNdRows(ids, u, rows),
      gradFunc: (dy: tf.Tensor, [i]: tf.Tensor[]) => tf.gather(dy, i!),
    };
  }) as unknown as (updates: tf.Tensor) => tf.Tensor;
}

/** The first line of an error's message. */
function firstLine(error: unknown): string {
  return (error as Error).message.split('\n')[0]!;
}

/**
 * The sparse-ops row on the active backend: dynn's Gather, ScatterAdd, SegmentSum and SegmentMax
 * (through their exported functions, as the ops call them) against tfjs's own ops, side by side.
 * Where tfjs's op cannot run here (on wasm: tf.gather's and tf.unsortedSegmentSum's gradients need
 * the missing UnsortedSegmentSum kernel, tf.scatterND has no gradient at all), the row records
 * why and times the same computation written with `tf.scatterND` / `tf.gather` by hand instead.
 * Each baseline is checked to compute what dynn computes (within 1e-5, relative) before timing.
 */
async function runSparse(
  timing: TimingOptions,
  onProgress: (label: string) => void,
): Promise<BenchSparseRow[]> {
  const { rows: k, segments: n, width } = SPARSE_SHAPES;
  const table = tf.randomUniform([n, width], -1, 1, 'float32', 11);
  const data = tf.randomUniform([k, width], -1, 1, 'float32', 12);
  const ids = tf.randomUniform([k], 0, n, 'int32', 13);
  const tableWeights = tf.randomUniform([n, width], -1, 1, 'float32', 14);
  const rowWeights = tf.randomUniform([k, width], -1, 1, 'float32', 15);
  const shapes = `[${k}, ${width}] rows, ${n} targets`;
  // The largest segment, which bounds SegmentMax's scan (a caller would know it: a capacity, a degree).
  const counts = new Int32Array(n);
  for (const id of await ids.data()) counts[id]!++;
  const longest = Math.max(...counts);
  const cases: Array<{ op: string; case: string; dynn: SparseBody; tfjs: SparseCandidate[] }> = [
    {
      op: 'core.Gather',
      case: `forward, ${shapes}`,
      dynn: () => [gatherRows(table, ids)],
      tfjs: [{ name: 'tf.gather', body: () => [tf.gather(table, ids)] }],
    },
    {
      op: 'core.Gather',
      case: `forward + backward, ${shapes}`,
      dynn: gradsOf((t) => gatherRows(t, ids), [table], rowWeights),
      tfjs: [
        { name: 'tf.gather', body: gradsOf((t) => tf.gather(t, ids), [table], rowWeights) },
        {
          name: 'tf.gather, tf.scatterND gradient (tf.customGrad)',
          body: gradsOf((t) => gatherWithScatterGrad(t, ids), [table], rowWeights),
        },
      ],
    },
    {
      op: 'core.ScatterAdd',
      case: `forward + backward, ${shapes}`,
      dynn: gradsOf((b, u) => scatterAddRows(b, ids, u), [table, data], tableWeights),
      tfjs: [
        {
          name: 'tf.add(base, tf.scatterND)',
          body: gradsOf((b, u) => tf.add(b, scatterNdRows(ids, u, n)), [table, data], tableWeights),
        },
        {
          name: 'tf.add(base, tf.scatterND), tf.gather gradient (tf.customGrad)',
          body: gradsOf((b, u) => tf.add(b, scatterWithGatherGrad(ids, n)(u)), [table, data], tableWeights),
        },
      ],
    },
    {
      op: 'core.SegmentSum',
      case: `forward, ${shapes}`,
      dynn: () => [segmentSum(data, ids, n)],
      tfjs: [
        { name: 'tf.unsortedSegmentSum', body: () => [tf.unsortedSegmentSum(data, ids as tf.Tensor1D, n)] },
        { name: 'tf.scatterND', body: () => [scatterNdRows(ids, data, n)] },
      ],
    },
    {
      op: 'core.SegmentSum',
      case: `forward + backward, ${shapes}`,
      dynn: gradsOf((d) => segmentSum(d, ids, n), [data], tableWeights),
      tfjs: [
        {
          name: 'tf.unsortedSegmentSum',
          body: gradsOf((d) => tf.unsortedSegmentSum(d, ids as tf.Tensor1D, n), [data], tableWeights),
        },
        {
          name: 'tf.scatterND, tf.gather gradient (tf.customGrad)',
          body: gradsOf((d) => scatterWithGatherGrad(ids, n)(d), [data], tableWeights),
        },
      ],
    },
    {
      op: 'core.SegmentMax',
      case: `forward + backward, ${shapes}`,
      dynn: gradsOf((d) => segmentMax(d, ids, n), [data], tableWeights),
      tfjs: [],
    },
    {
      op: 'core.SegmentMax',
      case: `forward + backward, ${shapes}, maxSegmentLength ${longest} (the largest segment)`,
      dynn: gradsOf((d) => segmentMax(d, ids, n, { maxSegmentLength: longest }), [data], tableWeights),
      tfjs: [],
    },
  ];
  const result: BenchSparseRow[] = [];
  for (const c of cases) {
    onProgress(`${c.op}: ${c.case}`);
    const expected = c.dynn();
    let baseline: SparseCandidate | undefined;
    let error: string | null = null;
    for (const candidate of c.tfjs) {
      let got: tf.Tensor[];
      try {
        got = candidate.body();
      } catch (caught) {
        error ??= `${candidate.name}: ${firstLine(caught)}`;
        continue;
      }
      const gaps = await Promise.all(got.map((t, i) => relativeGap(expected[i]!, t)));
      tf.dispose(got);
      const worst = Math.max(...gaps);
      if (!(worst <= 1e-5)) {
        tf.dispose(expected);
        throw new Error(`${c.op} (${c.case}): dynn and ${candidate.name} disagree by ${worst}`);
      }
      baseline = candidate;
      break;
    }
    tf.dispose(expected);
    const dynnBody = async () => readBack(c.dynn());
    let dynn: number;
    let tfjs: number | null = null;
    if (baseline === undefined) {
      dynn = await timeMedian(dynnBody, timing);
    } else {
      const body = baseline.body;
      [dynn, tfjs] = (await timeSideBySide([dynnBody, async () => readBack(body())], timing)) as [
        number,
        number,
      ];
    }
    result.push({
      op: c.op,
      case: c.case,
      dynn_ms: dynn,
      tfjs_ms: tfjs,
      ratio: tfjs === null ? null : dynn / tfjs,
      tfjs_baseline: baseline?.name ?? 'none: tfjs has no segment max',
      tfjs_error: error,
    });
  }
  tf.dispose([table, data, ids, tableWeights, rowWeights]);
  return result;
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
async function relativeGap(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const both = tf.tidy(() => tf.stack([tf.max(tf.abs(tf.sub(a, b))), tf.max(tf.abs(a))]));
  const [gap, scale] = await both.data();
  both.dispose();
  return scale! > 0 ? gap! / scale! : gap!;
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
      const gap = await relativeGap(expected, got);
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
    `Sparse ops: dynn's gather, scatter-add and segment reductions (their exported functions, as the ops ` +
      `call them) against tfjs on the same backend; where tfjs's own op cannot run there, the tfjs column ` +
      'is the same computation written with `tf.scatterND` / `tf.gather` by hand, and the failure is shown. ' +
      'Forward + backward: the gradients of `sum(op(x) * w)`.',
    '',
    markdownTable(
      ['op', 'case', 'dynn (ms)', 'tfjs (ms)', 'tfjs baseline', "tfjs's own op", 'dynn / tfjs'],
      result.sparse.map((r) => [
        r.op,
        r.case,
        ms(r.dynn_ms),
        r.tfjs_ms === null ? 'n/a' : ms(r.tfjs_ms),
        r.tfjs_baseline,
        r.tfjs_error !== null ? `fails: \`${r.tfjs_error}\`` : r.tfjs_ms === null ? 'none' : 'runs',
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
