import { sortedNet } from '@dynn/sorted-net';
import {
  benchSortedNetMarkdown,
  QUICK_BENCH_SORTED_NET,
  runBenchSortedNet,
  SORTED_NET_TRAIN_IMAGES,
} from '../commands/bench-sorted-net.js';
import {
  benchSortedNetRobustMarkdown,
  QUICK_BENCH_SORTED_NET_ROBUST,
  runBenchSortedNetRobust,
} from '../commands/bench-sorted-net-robust.js';
import {
  benchSortedNetTextMarkdown,
  QUICK_BENCH_SORTED_NET_TEXT,
  runBenchSortedNetText,
} from '../commands/bench-sorted-net-text.js';
import { QUICK_DEMO_SORTED_NET, runDemoSortedNet } from '../commands/demo-sorted-net.js';
import { exportSubNetworkFile, formatExportResult } from '../commands/sorted-net-export.js';
import { defineCliContribution } from '../contribution.js';

/** What `@dynn/sorted-net` adds to `dynn`: `sorted-net export`, three benches (images, `text`, `robust`) and a demo. */
export const sortedNetCli = defineCliContribution({
  name: 'sorted-net',
  description: 'nested networks: many sub-networks (width, depth, kernel) in one set of weights',
  plugins: [sortedNet()],
  commands: [
    {
      name: 'export',
      description:
        'save one sub-network of a nested model as a standalone, smaller model of plain ops (no sorted-net needed to load it)',
      arguments: [
        {
          name: 'model.json',
          description: 'nested dynn model file (nestModel, then sorted training, then saveModel)',
        },
        { name: 'out-dir', description: 'folder to write the exported model to' },
      ],
      options: [
        {
          flags: '--width <w>',
          description:
            'fraction of channels kept: one for every knob (0.5), or per knob (s0conv#out=0.5,s1conv#out=0.25)',
        },
        {
          flags: '--depth <d>',
          description: 'residual blocks kept per stage: one for every stage (2), or one per stage (1,2,3)',
        },
        {
          flags: '--kernel <k>',
          description: 'kernel size of elastic convolutions: one for all (3), or per layer (s0b0c1=3,...)',
        },
        {
          flags: '--no-fold-batch-norm',
          description:
            'keep batch norms as layers (to train the export further) instead of folding them into the convolutions',
        },
      ],
      async run({ args, options, out, runtime }) {
        const result = await exportSubNetworkFile(runtime, args[0]!, args[1]!, {
          ...(options.width === undefined ? {} : { width: String(options.width) }),
          ...(options.depth === undefined ? {} : { depth: String(options.depth) }),
          ...(options.kernel === undefined ? {} : { kernel: String(options.kernel) }),
          foldBatchNorm: options.foldBatchNorm !== false,
        });
        out(formatExportResult(result));
      },
    },
  ],
  benches: [
    {
      description:
        'a nested residual CNN on Fashion-MNIST, trained once with sorted training, on wasm: accuracy, FLOPs and time of 16 sub-networks (4 widths x 4 depths) against the full network, and each width trained alone',
      options: [
        { flags: '--epochs <n>', description: 'training epochs', parse: 'positive-int', default: 1 },
        {
          flags: '--train-images <n>',
          description: 'training images (the first of the 60,000)',
          parse: 'positive-int',
          default: SORTED_NET_TRAIN_IMAGES,
        },
        {
          flags: '--out <dir>',
          description: 'folder for the Pareto curve (JSON + SVG) and result.json',
          default: 'reports/sorted-net',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchSortedNet(
          {
            ...(quick
              ? QUICK_BENCH_SORTED_NET
              : { epochs: options.epochs as number, trainLimit: options.trainImages as number }),
            out: options.out as string,
            progress,
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchSortedNetMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
    {
      variant: 'text',
      description:
        'SoFT (sorted fine-tuning) of a 6-layer character transformer on Austen, on wasm: bits per character at every depth against ordinary training read out early and shared-head early exits, with FLOPs and time per depth',
      options: [
        {
          flags: '--steps <n>',
          description: 'training steps of each arm',
          parse: 'positive-int',
          default: 400,
        },
        {
          flags: '--per-step <n>',
          description: 'sub-networks per sorted step: the full model and n-1 sampled shallower depths',
          parse: 'positive-int',
          default: 3,
        },
        {
          flags: '--test-windows <n>',
          description: 'test windows measured (one next character each)',
          parse: 'positive-int',
          default: 2048,
        },
        {
          flags: '--out <dir>',
          description: 'folder for result.json and the BPC-versus-depth chart',
          default: 'reports/sorted-net-text',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchSortedNetText(
          {
            ...(quick
              ? QUICK_BENCH_SORTED_NET_TEXT
              : {
                  steps: options.steps as number,
                  perStep: options.perStep as number,
                  testWindows: options.testWindows as number,
                }),
            out: options.out as string,
            progress,
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchSortedNetTextMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
    {
      variant: 'robust',
      description:
        'robust students (ProARD): PGD distillation of a nested residual CNN on Fashion-MNIST, progressive shrinking vs random sampling, clean and PGD-10 (8/255) accuracy of the smallest and largest sub-network over 3 seeds',
      options: [
        {
          flags: '--steps <n>',
          description: 'robust-distillation steps per strategy',
          parse: 'positive-int',
          default: 120,
        },
        {
          flags: '--out <dir>',
          description: 'folder for runs.json, accuracy.svg and result.json',
          default: 'reports/sorted-net-robust',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchSortedNetRobust(
          {
            ...(quick ? QUICK_BENCH_SORTED_NET_ROBUST : { steps: options.steps as number }),
            out: options.out as string,
            progress,
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchSortedNetRobustMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
  ],
  demo: {
    description:
      'train a small nested CNN once on Fashion-MNIST with sorted training, then run several of its sub-networks: accuracy, FLOPs and time of each',
    options: [
      {
        flags: '--out <dir>',
        description: 'folder for the report (markdown + SVG)',
        default: 'reports/demo-sorted-net',
      },
    ],
    async run({ options, quick, progress, out, log }) {
      const result = await runDemoSortedNet(
        { ...(quick ? QUICK_DEMO_SORTED_NET : {}), out: options.out as string, progress },
        log,
      );
      const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
      out(
        [
          `one nested CNN, trained once on ${result.trainImages} images (${result.trainSeconds.toFixed(0)} s), measured on ${result.testImages} test images:`,
          ...result.rows.map(
            (r) =>
              `  width ${r.width}, depth ${r.depth}: ${pct(r.accuracy)} at ${r.mflops_per_sample.toFixed(3)} MFLOPs/image, ` +
              `${r.ms_per_batch.toFixed(1)} ms per batch of 256 (${r.speedup.toFixed(2)}x the largest's speed)`,
          ),
          `exported ${result.export.subNetwork} as a plain model: ${result.export.paramsExported.toLocaleString('en-US')} parameters ` +
            `(the nested model: ${result.export.paramsNested.toLocaleString('en-US')})`,
          "one short epoch on a subset: a demo's accuracies (`dynn bench sorted-net` trains on 3x the images, with baselines)",
          `report: ${result.reportDir}`,
          '',
        ].join('\n'),
      );
    },
  },
});
