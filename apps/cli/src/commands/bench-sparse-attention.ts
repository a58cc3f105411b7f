import {
  createModel,
  createRuntime,
  DynnError,
  type Graph,
  GraphBuilder,
  type Model,
  Trainer,
  useBackend,
} from '@dynn/core';
import { addSparseAttention, type Pattern, sparseAttention } from '@dynn/sparse-attention';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { lineChartSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';
import {
  QUICK_SPARSE_ATTENTION_RETRIEVAL,
  QUICK_SPARSE_ATTENTION_TEXT,
  retrievalMarkdown,
  runSparseAttentionRetrieval,
  runSparseAttentionText,
  type SparseAttentionRetrievalResult,
  type SparseAttentionTextResult,
  textQualityMarkdown,
} from './bench-sparse-attention-quality.js';

/** One attention layer the speed sweep measures: dense, or a sparse-attention configuration. */
export interface SweepPattern {
  /** Row label: `dense`, `local`, `local + routing`.... */
  name: string;
  /** The sparse-attention pattern of its pattern heads; absent for dense attention. */
  pattern?: Pattern;
  /** Routing heads (of the layer's heads), 0 for none. */
  routingHeads: number;
}

/** Options of `dynn bench sparse-attention` (the speed and memory sweep). */
export interface SparseAttentionSweepOptions {
  /** Sequence lengths of the forward pass (default 512 to 8,192, doubling). */
  lengths?: readonly number[];
  /** Longest sequence a training step is measured at (default 4,096). */
  maxTrainLength?: number;
  /** Width of the layer's input and output (default 64). */
  width?: number;
  /** Attention heads (default 4; `local + routing` routes in half of them). */
  heads?: number;
  /** Look-back of the local window, in positions (default 256). */
  window?: number;
  /** Keys per block of the sparse plans (default 64). */
  blockSize?: number;
  /** Untimed runs per case before timing (default 1). */
  warmup?: number;
  /** Timed forward runs per case; the median is reported (default 3). */
  repeats?: number;
  /** Timed training steps per case (default 2). */
  trainRepeats?: number;
  /** Draw a progress bar (default true). */
  progress?: boolean;
  /** Folder for the sweep's SVG plots (default `reports/sparse-attention`). */
  out?: string;
}

/** One row of the sweep: a pattern at a length, forward or training step. */
export interface SweepRow {
  n: number;
  pattern: string;
  case: 'forward' | 'train';
  /** Median milliseconds per call (null when it could not run). */
  ms: number | null;
  /** Peak bytes the call allocated above what was held before it, from `tf.profile` (null when it could not run). */
  peak_bytes: number | null;
  /** Dense attention's milliseconds over this row's, at the same length and case (null without both). */
  speedup_vs_dense: number | null;
  /** This row's peak bytes over dense attention's (null without both). */
  memory_ratio: number | null;
  /** Why the row could not run, or null. */
  error: string | null;
}

/** The sweep's result and the goal it is held to. */
export interface SparseAttentionSweep {
  results: SweepRow[];
  /** At n = 4,096: local + routing at least 5x faster than dense in the forward pass, with at most 1/8 of its peak memory. */
  goal: {
    n: number;
    met: boolean;
    speedup: number | null;
    memory_ratio: number | null;
  };
  config: { width: number; heads: number; window: number; blockSize: number };
  reportDir: string;
}

/** The layer configurations the sweep measures, dense first. */
export function sweepPatterns(window: number, blockSize: number): SweepPattern[] {
  const causalWindow: Pattern = {
    type: 'and',
    of: [{ type: 'causal' }, { type: 'window', before: window - 1, after: 0 }],
  };
  const windowBlocks = Math.max(1, 2 * Math.floor(window / blockSize / 2) + 1);
  return [
    { name: 'dense', routingHeads: 0 },
    { name: 'causal (all kept tiles)', pattern: { type: 'causal' }, routingHeads: 0 },
    { name: 'local', pattern: causalWindow, routingHeads: 0 },
    {
      name: 'dilated',
      pattern: {
        type: 'and',
        of: [{ type: 'causal' }, { type: 'dilated', before: 2 * window - 1, after: 0, dilation: 2 }],
      },
      routingHeads: 0,
    },
    {
      name: 'bigbird',
      pattern: { type: 'bigbird', windowBlocks, globalBlocks: 1, randomBlocks: 2, seed: 0 },
      routingHeads: 0,
    },
    { name: 'longformer', pattern: { type: 'longformer', windowBlocks, globalBlocks: [0] }, routingHeads: 0 },
    { name: 'local + routing', pattern: causalWindow, routingHeads: -1 },
  ];
}

const GOAL_N = 4096;
const GOAL_SPEEDUP = 5;
const GOAL_MEMORY = 1 / 8;

/** A one-layer graph: `x` `[batch, n, width]` through the layer's attention to `y`. */
function layerGraph(
  n: number,
  width: number,
  heads: number,
  blockSize: number,
  window: number,
  spec: SweepPattern,
): Graph {
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', n, width]);
  const keyDim = width / heads;
  const y =
    spec.pattern === undefined
      ? b.add('core.MultiHeadAttention', [x, x], { numHeads: heads, keyDim, causal: true }, { name: 'attn' })
      : addSparseAttention(b, x, {
          numHeads: heads,
          keyDim,
          blockSize,
          pattern: spec.pattern,
          routing:
            spec.routingHeads === 0
              ? null
              : {
                  heads: heads / 2,
                  // About one cluster per window of positions: a window's worth of tokens each.
                  clusters: Math.max(2, Math.round(n / window)),
                  window: window / 2,
                  causal: true,
                  decay: 0.999,
                  commitment: 1e-4,
                },
          name: 'attn',
        });
  return b.build({ y });
}

/** The message of an error, on one line. */
function reason(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}

/** One case's model, inputs and calls; `call` finishes its work (reads back) before resolving. */
interface Case {
  spec: SweepPattern;
  model: Model;
  call: () => Promise<void>;
  dispose: () => void;
}

function forwardCase(model: Model, x: tf.Tensor, spec: SweepPattern): Case {
  return {
    spec,
    model,
    call: async () => {
      const { outputs } = await model.run(x, { report: false });
      await outputs.y!.data();
      tf.dispose(Object.values(outputs));
    },
    dispose: () => model.dispose(),
  };
}

function trainCase(model: Model, x: tf.Tensor, target: tf.Tensor, spec: SweepPattern): Case {
  const optimizer = tf.train.sgd(1e-3);
  const trainer = new Trainer(model, { optimizer, loss: 'meanSquaredError' });
  let step = 0;
  return {
    spec,
    model,
    call: async () => {
      await trainer.step(x, target, step++);
    },
    dispose: () => {
      trainer.dispose();
      optimizer.dispose();
      model.dispose();
    },
  };
}

/** Peak bytes `call` allocates above what is held before it. */
async function peakBytes(call: () => Promise<void>): Promise<number> {
  const before = tf.memory().numBytes;
  const info = await tf.profile(call);
  return Math.max(0, info.peakBytes - before);
}

/**
 * Times and profiles one attention layer (d 64, 4 heads, batch 1) at sequence lengths 512 to
 * 8,192 on wasm, dense (`core.MultiHeadAttention`, causal) against sparse-attention's patterns:
 * the forward pass with the output read back, and a training step (SGD on a mean squared error)
 * up to 4,096. At each length and case every configuration is timed side by side (interleaved
 * medians after warm-up); peak memory is measured separately, with `tf.profile`, so profiling
 * does not slow the timed runs. A configuration that fails (dense attention's n x n scores not
 * fitting in memory) is a row with its `error`.
 */
export async function runSparseAttentionSweep(
  options: SparseAttentionSweepOptions = {},
  log: (line: string) => void = () => {},
): Promise<SparseAttentionSweep> {
  await useBackend('wasm');
  const lengths = options.lengths ?? [512, 1024, 2048, 4096, 8192];
  const maxTrain = options.maxTrainLength ?? 4096;
  const width = options.width ?? 64;
  const heads = options.heads ?? 4;
  const window = options.window ?? 256;
  const blockSize = options.blockSize ?? 64;
  const timing = { warmup: options.warmup ?? 1, repeats: options.repeats ?? 3 };
  const specs = sweepPatterns(window, blockSize);
  const kinds = (n: number) => (n <= maxTrain ? (['forward', 'train'] as const) : (['forward'] as const));
  const bar = progressBar('sweep', options.progress ?? true);
  const total = lengths.reduce((sum, n) => sum + kinds(n).length * specs.length, 0);
  const results: SweepRow[] = [];
  bar.start(total, 0, { status: '' });
  try {
    for (const n of lengths) {
      for (const kind of kinds(n)) {
        const x = tf.randomNormal([1, n, width], 0, 1, 'float32', n);
        const target = tf.zerosLike(x);
        const ready: Case[] = [];
        const rows = new Map<string, SweepRow>();
        for (const spec of specs) {
          const row: SweepRow = {
            n,
            pattern: spec.name,
            case: kind,
            ms: null,
            peak_bytes: null,
            speedup_vs_dense: null,
            memory_ratio: null,
            error: null,
          };
          rows.set(spec.name, row);
          results.push(row);
          let built: Case | undefined;
          try {
            const model = createModel(
              createRuntime({ plugins: [sparseAttention()] }),
              layerGraph(n, width, heads, blockSize, window, spec),
              { seed: 1 },
            );
            built = kind === 'forward' ? forwardCase(model, x, spec) : trainCase(model, x, target, spec);
            row.peak_bytes = await peakBytes(built.call);
            ready.push(built);
          } catch (error) {
            row.error = reason(error);
            built?.dispose();
          }
          bar.increment(1, { status: `n ${n} ${kind} ${spec.name}` });
        }
        const ms = await timeSideBySide(
          ready.map((c) => c.call),
          kind === 'forward' ? timing : { warmup: 0, repeats: options.trainRepeats ?? 2 },
        );
        ready.forEach((c, i) => {
          rows.get(c.spec.name)!.ms = ms[i]!;
        });
        const dense = rows.get('dense')!;
        for (const row of rows.values()) {
          if (row.ms !== null && dense.ms !== null) row.speedup_vs_dense = dense.ms / row.ms;
          if (row.peak_bytes !== null && dense.peak_bytes)
            row.memory_ratio = row.peak_bytes / dense.peak_bytes;
        }
        for (const c of ready) c.dispose();
        tf.dispose([x, target]);
        log(
          `n ${n} ${kind}: ${[...rows.values()].map((r) => `${r.pattern} ${r.ms === null ? 'failed' : `${r.ms.toFixed(1)} ms`}`).join(', ')}`,
        );
      }
    }
  } finally {
    bar.stop();
  }
  const goalRow = (name: string) =>
    results.find((r) => r.n === GOAL_N && r.case === 'forward' && r.pattern === name);
  const routed = goalRow('local + routing');
  const goal = {
    n: GOAL_N,
    speedup: routed?.speedup_vs_dense ?? null,
    memory_ratio: routed?.memory_ratio ?? null,
    met:
      routed?.speedup_vs_dense != null &&
      routed.memory_ratio != null &&
      routed.speedup_vs_dense >= GOAL_SPEEDUP &&
      routed.memory_ratio <= GOAL_MEMORY,
  };
  const reportDir = await writeReport(options.out ?? 'reports/sparse-attention', {
    'forward-time.svg': await sweepChart(results, 'forward', 'ms', 'forward pass, ms (batch 1)'),
    'forward-memory.svg': await sweepChart(results, 'forward', 'peak_bytes', 'forward pass, peak MiB'),
    'train-time.svg': await sweepChart(results, 'train', 'ms', 'training step, ms (batch 1)'),
  });
  return { results, goal, config: { width, heads, window, blockSize }, reportDir };
}

/** A line per pattern of `field` against the sequence length, for one case. */
function sweepChart(
  results: readonly SweepRow[],
  kind: SweepRow['case'],
  field: 'ms' | 'peak_bytes',
  yLabel: string,
): Promise<string> {
  const names = [...new Set(results.map((r) => r.pattern))];
  return lineChartSvg({
    title: `sparse attention against dense on wasm: ${kind === 'forward' ? 'forward' : 'training step'}`,
    xLabel: 'sequence length n',
    yLabel,
    series: names.map((name) => ({
      name,
      points: results
        .filter((r) => r.pattern === name && r.case === kind && r[field] !== null)
        .map((r) => ({ x: r.n, y: field === 'peak_bytes' ? r[field]! / 2 ** 20 : r[field]! })),
    })),
  });
}

/** The sweep's tables and goal line, for the benchmarks page. */
export function sweepMarkdown(sweep: SparseAttentionSweep): string {
  const mib = (bytes: number | null) => (bytes === null ? '-' : (bytes / 2 ** 20).toFixed(1));
  const ratio = (value: number | null, digits = 2) => (value === null ? '-' : value.toFixed(digits));
  const table = (kind: SweepRow['case']) =>
    markdownTable(
      ['n', 'pattern', 'ms', 'peak MiB', 'speedup vs dense', 'memory vs dense', 'error'],
      sweep.results
        .filter((r) => r.case === kind)
        .map((r) => [
          r.n.toLocaleString('en-US'),
          r.pattern,
          r.ms === null ? '-' : r.ms.toFixed(1),
          mib(r.peak_bytes),
          ratio(r.speedup_vs_dense),
          ratio(r.memory_ratio, 3),
          r.error ?? '',
        ]),
    );
  const { width, heads, window, blockSize } = sweep.config;
  const g = sweep.goal;
  return [
    `One attention layer (d ${width}, ${heads} heads, batch 1), causal local window ${window}, blocks of ${blockSize}; \`local + routing\` routes in ${heads / 2} of the heads. Dense is \`core.MultiHeadAttention\`. Peak memory is what a call allocates above what was held before it (\`tf.profile\`, measured apart from the timed runs).`,
    '',
    'Forward pass (output read back):',
    '',
    table('forward'),
    '',
    'Training step (SGD on a mean squared error):',
    '',
    table('train'),
    '',
    `Goal at n = ${g.n.toLocaleString('en-US')}: local + routing >= ${GOAL_SPEEDUP}x faster than dense in the forward pass with <= 1/8 of its peak memory: ${g.met ? 'met' : 'not met'} (${ratio(g.speedup)}x, ${ratio(g.memory_ratio, 3)} of the memory).`,
  ].join('\n');
}

/** The parts of `dynn bench sparse-attention`, in the order they run. */
export const BENCH_SPARSE_ATTENTION_PARTS = ['speed', 'text', 'retrieval'] as const;

/** Options of `dynn bench sparse-attention`. */
export interface BenchSparseAttentionOptions {
  /** Parts to run (default all of {@link BENCH_SPARSE_ATTENTION_PARTS}). */
  parts?: readonly string[];
  /** Sequence lengths of the speed sweep, as typed (default 512 to 8,192). */
  lengths?: readonly string[];
  /** A smoke-sized run of every part. */
  quick?: boolean;
  /** Folder for the report (default `reports/sparse-attention`). */
  out?: string;
  /** Draw progress bars (default true). */
  progress?: boolean;
}

/** What `dynn bench sparse-attention` measured: its JSON fields, and each part's full result. */
export interface BenchSparseAttentionRun {
  result: {
    results: SweepRow[];
    quality: Record<string, number | null>;
    goals: { speed: boolean | null; text: boolean | null; retrieval: boolean | null };
  };
  sweep?: SparseAttentionSweep;
  text?: SparseAttentionTextResult;
  retrieval?: SparseAttentionRetrievalResult;
  reportDir: string;
}

function checkedParts(parts: readonly string[]): Set<string> {
  const unknown = parts.filter((p) => !(BENCH_SPARSE_ATTENTION_PARTS as readonly string[]).includes(p));
  if (unknown.length > 0 || parts.length === 0) {
    throw new DynnError(
      'INVALID_OPTION',
      `--parts ${parts.join(',')}: unknown part ${unknown.join(', ') || '(none given)'}. Use any of ${BENCH_SPARSE_ATTENTION_PARTS.join(', ')}.`,
    );
  }
  return new Set(parts);
}

function checkedLengths(lengths: readonly string[]): number[] {
  return lengths.map((text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 16 || n > 65_536) {
      throw new DynnError(
        'INVALID_OPTION',
        `--lengths: ${JSON.stringify(text)} is not a sequence length. Give whole numbers from 16 to 65,536, comma-separated.`,
      );
    }
    return n;
  });
}

/**
 * Runs the parts of `dynn bench sparse-attention` on wasm: the speed and memory sweep
 * ({@link runSparseAttentionSweep}), then full vs local vs local + routing attention on Austen and
 * on the long-range retrieval task (3 seeds each). Options are checked before anything runs.
 */
export async function runBenchSparseAttention(
  options: BenchSparseAttentionOptions,
  log: (line: string) => void,
): Promise<BenchSparseAttentionRun> {
  const parts = checkedParts(options.parts ?? BENCH_SPARSE_ATTENTION_PARTS);
  const lengths = options.lengths === undefined ? undefined : checkedLengths(options.lengths);
  const out = options.out ?? 'reports/sparse-attention';
  const progress = options.progress ?? true;
  const quick = options.quick ?? false;
  const run: Omit<BenchSparseAttentionRun, 'result'> = { reportDir: out };
  if (parts.has('speed')) {
    run.sweep = await runSparseAttentionSweep(
      {
        ...(quick
          ? { lengths: [128, 256], maxTrainLength: 256, warmup: 0, repeats: 1, trainRepeats: 1 }
          : {}),
        ...(lengths === undefined ? {} : { lengths }),
        out,
        progress,
      },
      log,
    );
  }
  if (parts.has('text')) {
    run.text = await runSparseAttentionText({ ...(quick ? QUICK_SPARSE_ATTENTION_TEXT : {}), progress }, log);
  }
  if (parts.has('retrieval')) {
    run.retrieval = await runSparseAttentionRetrieval(
      { ...(quick ? QUICK_SPARSE_ATTENTION_RETRIEVAL : {}), progress },
      log,
    );
  }
  const textArm = (arm: string) => run.text?.arms.find((a) => a.arm === arm);
  const retrievalArm = (arm: string) => run.retrieval?.arms.find((a) => a.arm === arm);
  const quality: Record<string, number | null> = {};
  for (const [key, arm] of [
    ['full_bpc', 'full'],
    ['local_bpc', 'local'],
    ['routing_bpc', 'routing'],
  ] as const) {
    quality[key] = textArm(arm)?.bpc ?? null;
    quality[`${key}_std`] = textArm(arm)?.bpc_std ?? null;
  }
  for (const arm of ['local', 'routing'] as const) {
    quality[`retrieval_${arm}`] = retrievalArm(arm)?.accuracy ?? null;
    quality[`retrieval_${arm}_std`] = retrievalArm(arm)?.accuracy_std ?? null;
  }
  return {
    ...run,
    result: {
      results: run.sweep?.results ?? [],
      quality,
      goals: {
        speed: run.sweep?.goal.met ?? null,
        text: run.text?.goal.met ?? null,
        retrieval: run.retrieval?.goal.met ?? null,
      },
    },
  };
}

/** The benchmarks-page section of a run: who measured it, then each part that ran. */
export function benchSparseAttentionMarkdown(run: BenchSparseAttentionRun, head: BenchHead): string {
  return [
    `${measuredOn(head)}.`,
    ...(run.sweep ? ['', '### Time and memory against sequence length', '', sweepMarkdown(run.sweep)] : []),
    ...(run.text ? ['', '### Austen at 1,024 characters', '', textQualityMarkdown(run.text)] : []),
    ...(run.retrieval
      ? ['', '### Long-range retrieval at 2,048 tokens', '', retrievalMarkdown(run.retrieval)]
      : []),
  ].join('\n');
}
