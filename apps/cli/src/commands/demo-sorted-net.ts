import { createRuntime, type Graph, runPass, useBackend } from '@dynn/core';
import { sortedNet, subNetworkKey, subNetworkOptions } from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';
import { runEach } from '../exit-runs.js';
import { markdownTable, writeReport } from '../report-files.js';
import { timeSideBySide } from '../timing.js';
import {
  batchesOf,
  loadSortedNetData,
  measureAccuracy,
  nestedResidualCnn,
  sortedNetParetoSvg,
  subModelName,
  subNetworkGrid,
  trainSortedNet,
} from './bench-sorted-net.js';

/** Options of `dynn demo sorted-net`. */
export interface DemoSortedNetOptions {
  /** Training images (default 6,000). */
  trainLimit?: number;
  /** Test images measured (default 2,000). */
  testLimit?: number;
  /** Training images batch norm is recalibrated on (default 1,024). */
  calibrationImages?: number;
  /** Test images timed at batch 256 (default 512). */
  timedImages?: number;
  /** Timed passes per sub-network (default 3). */
  repeats?: number;
  /** Folder for the report (default `reports/demo-sorted-net`). */
  out?: string;
  /** Draw progress bars (default true). */
  progress?: boolean;
}

/** `--quick`: a smoke-sized run of a few seconds. */
export const QUICK_DEMO_SORTED_NET: DemoSortedNetOptions = {
  trainLimit: 256,
  testLimit: 256,
  calibrationImages: 128,
  timedImages: 256,
  repeats: 1,
};

/** Channels per stage and blocks per stage of the demo's network: the bench's, one block shallower. */
const DEMO_STAGE_WIDTHS = [8, 16, 32] as const;
const DEMO_BLOCKS = 2;
/** What sorted training samples: every width and depth below. */
const DEMO_TRAIN_WIDTHS = [0.25, 0.5, 0.75, 1] as const;
const DEMO_DEPTHS = [0, 1, 2] as const;
/** The sub-networks the table shows. */
const DEMO_TABLE_WIDTHS = [0.25, 0.5, 1] as const;

/** One row of the demo's table. */
export interface DemoSortedNetRow {
  width: number;
  depth: number;
  accuracy: number;
  mflops_per_sample: number;
  ms_per_batch: number;
  /** The largest sub-network's ms per batch over this one's. */
  speedup: number;
}

/** What the demo measured. */
export interface DemoSortedNetResult {
  rows: DemoSortedNetRow[];
  /** Parameters of the nested model, and of one sub-network exported as a plain model. */
  export: { subNetwork: string; paramsNested: number; paramsExported: number };
  trainImages: number;
  testImages: number;
  trainSeconds: number;
  reportDir: string;
}

/** Parameter elements a graph declares (a plain graph's shapes are all numbers). */
function paramsOf(graph: Graph): number {
  return graph.params.reduce((sum, t) => sum + t.shape.reduce<number>((a, b) => a * Number(b), 1), 0);
}

/**
 * Trains a small nested residual CNN once with sorted training on a Fashion-MNIST subset, then
 * runs a few of its sub-networks (width x depth) on test images: accuracy, FLOPs from the compute
 * reports and time per batch of 256 measured side by side; exports one sub-network as a plain
 * model. Writes a markdown report and the accuracy-versus-FLOPs chart.
 */
export async function runDemoSortedNet(
  options: DemoSortedNetOptions,
  log: (line: string) => void,
): Promise<DemoSortedNetResult> {
  await useBackend('wasm');
  const { train, calibration, test } = await loadSortedNetData({
    trainLimit: options.trainLimit ?? 6000,
    calibrationImages: options.calibrationImages ?? 1024,
    testLimit: options.testLimit ?? 2000,
  });
  const runtime = createRuntime({ plugins: [sortedNet()] });
  const grid = subNetworkGrid(DEMO_TABLE_WIDTHS, [0, DEMO_BLOCKS]);
  const batches: tf.Tensor[] = [];
  let model: Awaited<ReturnType<typeof trainSortedNet>>['model'] | undefined;
  try {
    log(
      `training a nested residual CNN (${DEMO_STAGE_WIDTHS.join('/')} channels, ${DEMO_BLOCKS} blocks per stage) on ${train.x.shape[0]} images: ` +
        `each step the largest, the smallest and one random sub-network of widths ${DEMO_TRAIN_WIDTHS.join('/')} x depths ${DEMO_DEPTHS.join('/')}`,
    );
    const trained = await trainSortedNet(
      await nestedResidualCnn(runtime, DEMO_STAGE_WIDTHS, DEMO_BLOCKS, 1),
      train,
      calibration,
      grid,
      {
        epochs: 1,
        batchSize: 32,
        learningRate: 1e-2,
        seed: 1,
        progress: options.progress ?? true,
        widths: DEMO_TRAIN_WIDTHS,
        depths: DEMO_DEPTHS,
        perStep: 3,
      },
      log,
    );
    model = trained.model;
    const measured: { accuracy: number; mflops: number }[] = [];
    for (const sub of grid) measured.push(await measureAccuracy(model, test, subNetworkOptions(sub)));
    batches.push(...batchesOf(test.x, Math.min(options.timedImages ?? 512, test.x.shape[0]!), 256));
    log(`timing ${grid.length} sub-networks side by side`);
    const times = await timeSideBySide(
      grid.map((sub) => runEach(model!, subNetworkOptions(sub), batches, false)),
      { warmup: 1, repeats: options.repeats ?? 3 },
    );
    const largestMs = times.at(-1)! / batches.length;
    const rows: DemoSortedNetRow[] = grid.map((sub, i) => ({
      width: sub.width,
      depth: sub.depth,
      accuracy: measured[i]!.accuracy,
      mflops_per_sample: measured[i]!.mflops,
      ms_per_batch: times[i]! / batches.length,
      speedup: largestMs / (times[i]! / batches.length),
    }));

    // Deployment: one sub-network as a plain model a runtime without sorted-net loads.
    const exportedSub = { width: 0.5, depth: 1 };
    const exported = runPass(runtime, 'sorted-net.export', model, exportedSub);
    const paramsExported = paramsOf(exported.graph);
    tf.dispose([...exported.weights.values()]);

    const svg = await sortedNetParetoSvg(
      'Demo: one nested CNN, several sub-networks (Fashion-MNIST test images)',
      rows.map((r) => ({
        width: r.width,
        depth: r.depth,
        accuracy: r.accuracy,
        mflops: r.mflops_per_sample,
      })),
    );
    const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
    const table = markdownTable(
      [
        'sub-network',
        'width',
        'depth (blocks per stage)',
        'test accuracy',
        'MFLOPs / image',
        'ms / batch 256',
        'speedup',
      ],
      rows.map((r) => [
        subModelName(r.width, r.depth),
        r.width,
        r.depth,
        pct(r.accuracy),
        r.mflops_per_sample.toFixed(3),
        r.ms_per_batch.toFixed(1),
        `${r.speedup.toFixed(2)}x`,
      ]),
    );
    const result = {
      rows,
      export: {
        subNetwork: subNetworkKey(exportedSub),
        paramsNested: model.paramCount,
        paramsExported,
      },
      trainImages: train.x.shape[0]!,
      testImages: test.x.shape[0]!,
      trainSeconds: trained.seconds,
    };
    const reportDir = await writeReport(options.out ?? 'reports/demo-sorted-net', {
      'README.md': [
        '# dynn demo: one nested network, many sub-networks',
        '',
        `A residual CNN trained once with sorted training on ${result.trainImages.toLocaleString('en-US')} Fashion-MNIST images ` +
          `(${result.trainSeconds.toFixed(0)} s on ${tf.getBackend()}), batch norm recalibrated per sub-network, then measured on ` +
          `${result.testImages.toLocaleString('en-US')} test images. Each row is the same weights run with other run options ` +
          '(`subNetworkOptions({ width, depth })`): no retraining, no second model. FLOPs come from the compute reports; ' +
          'times are medians of side-by-side passes at batch 256; speedup is over the largest sub-network.',
        '',
        table,
        '',
        `Exporting ${result.export.subNetwork} with \`sorted-net.export\` gives a plain model of ${paramsExported.toLocaleString('en-US')} ` +
          `parameters (the nested model holds ${result.export.paramsNested.toLocaleString('en-US')}).`,
        '',
        "One short epoch on a subset: the accuracies are a demo's, well below what longer training reaches, and the " +
          'narrowest sub-networks lag most. What the table shows is the trade-off one set of weights offers: compute ' +
          'chosen per call, accuracy and measured time following it.',
        '',
        '![accuracy vs FLOPs](accuracy-vs-flops.svg)',
        '',
      ].join('\n'),
      'accuracy-vs-flops.svg': svg,
      'result.json': `${JSON.stringify(result, null, 2)}\n`,
    });
    return { ...result, reportDir };
  } finally {
    model?.dispose();
    tf.dispose([...batches, train.x, train.y, calibration, test.x, test.y]);
  }
}
