import { DynnError } from '@dynn/core';
import { type ExitHeadKind, earlyExit } from '@dynn/early-exit';
import {
  benchEarlyExitMarkdown,
  QUICK_BENCH_EARLY_EXIT,
  runBenchEarlyExit,
} from '../commands/bench-early-exit.js';
import {
  benchEarlyExitTextMarkdown,
  QUICK_BENCH_EARLY_EXIT_TEXT,
  runBenchEarlyExitText,
} from '../commands/bench-early-exit-text.js';
import { addExitsToFile, HEAD_CHOICES } from '../commands/early-exit-add.js';
import { defineCliContribution } from '../contribution.js';

/** What `@dynn/early-exit` adds to `dynn`: `early-exit add`, two benches and a demo. */
export const earlyExitCli = defineCliContribution({
  name: 'early-exit',
  description: 'early-exit networks: confident rows stop computing',
  plugins: [earlyExit()],
  commands: [
    {
      name: 'add',
      description: 'insert early exits into a dynn model and save the multi-exit model',
      arguments: [
        { name: 'model.json', description: 'dynn model file' },
        { name: 'out-dir', description: 'folder to write the model with exits to' },
      ],
      options: [
        {
          flags: '--at <nodes>',
          description: 'comma-separated node names to put an exit after',
          parse: 'list',
        },
        {
          flags: '--every <k>',
          description: 'an exit after every k-th layer with parameters',
          parse: 'positive-int',
        },
        { flags: '--head <kind>', description: 'exit head', choices: HEAD_CHOICES, default: 'linear' },
        { flags: '--halting', description: 'add a learned halting head to every exit' },
      ],
      async run({ args, options, out, runtime }) {
        const at = options.at as string[] | undefined;
        const every = options.every as number | undefined;
        if ((at === undefined) === (every === undefined)) {
          throw new DynnError('INVALID_OPTION', 'Give exactly one of --at <nodes> or --every <k>.');
        }
        const result = await addExitsToFile(runtime, args[0]!, args[1]!, {
          ...(at ? { at } : {}),
          ...(every ? { every } : {}),
          head: options.head as ExitHeadKind,
          halting: (options.halting as boolean | undefined) ?? false,
        });
        out(`wrote ${result.file} with ${result.exits.length} exits: ${result.exits.join(', ')}\n`);
      },
    },
  ],
  benches: [
    {
      description:
        'a Fashion-MNIST CNN with three exits on wasm: the static network vs the calibrated dynamic one on the test set',
      options: [
        { flags: '--epochs <n>', description: 'training epochs', parse: 'positive-int', default: 2 },
        {
          flags: '--out <dir>',
          description: 'folder for the Pareto curve (JSON + SVG) and result.json',
          default: 'reports/early-exit',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchEarlyExit(
          {
            ...(quick ? QUICK_BENCH_EARLY_EXIT : { epochs: options.epochs as number }),
            out: options.out as string,
            progress,
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchEarlyExitMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
    {
      variant: 'text',
      description:
        'a character-level transformer on Austen with an exit after every block sharing one output head, on wasm: bits per character, blocks used, FLOPs and time at three operating points against the static network',
      options: [
        { flags: '--steps <n>', description: 'training steps', parse: 'positive-int', default: 800 },
        {
          flags: '--test-windows <n>',
          description: 'test windows measured (one next character each)',
          parse: 'positive-int',
          default: 2048,
        },
        {
          flags: '--out <dir>',
          description: 'folder for result.json, the sweep and the BPC-versus-depth chart',
          default: 'reports/early-exit-text',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchEarlyExitText(
          {
            ...(quick
              ? QUICK_BENCH_EARLY_EXIT_TEXT
              : { steps: options.steps as number, testWindows: options.testWindows as number }),
            out: options.out as string,
            progress,
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchEarlyExitTextMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
  ],
  demo: {
    description:
      'insert three exits into a Fashion-MNIST CNN, train them with the network, calibrate a threshold and compare static and dynamic',
    options: [
      {
        flags: '--out <dir>',
        description: 'folder for the Pareto curve (JSON + SVG)',
        default: 'reports/demo-early-exit',
      },
    ],
    async run({ options, quick, progress, out, log }) {
      // The bench's network and pipeline at demo size: one epoch on 12,000 images, a minute on wasm.
      const run = await runBenchEarlyExit(
        {
          ...(quick ? QUICK_BENCH_EARLY_EXIT : { epochs: 1, trainLimit: 12_000, testLimit: 2_000 }),
          out: options.out as string,
          progress,
        },
        log,
      );
      const { full, dynamic } = run.result;
      const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
      out(
        [
          `static network: ${pct(full.accuracy)} at ${full.mflops_per_sample.toFixed(3)} MFLOPs/image`,
          `early exit: ${pct(dynamic.accuracy)} at ${dynamic.mflops_per_sample.toFixed(3)} MFLOPs/image ` +
            `(served by exit 1 / 2 / 3 / final: ${dynamic.exit_histogram.join(' / ')})`,
          `measured: ${run.result.speedup.toFixed(2)}x faster at batch 256, ${run.result.flops_reduction.toFixed(2)}x fewer FLOPs`,
          `report: ${run.reportDir}`,
          '',
        ].join('\n'),
      );
    },
  },
});
