import { readFile, writeFile } from 'node:fs/promises';
import { BACKEND_NAMES, type BackendName, isDynnError } from '@dynn/core';
import type { ExitHeadKind } from '@dynn/early-exit';
import * as tf from '@tensorflow/tfjs-core';
import { Command, InvalidArgumentError, Option } from 'commander';
import { benchCoreMarkdown, runBenchCore } from './commands/bench-core.js';
import { benchEarlyExitMarkdown, runBenchEarlyExit } from './commands/bench-early-exit.js';
import { benchEarlyExitTextMarkdown, runBenchEarlyExitText } from './commands/bench-early-exit-text.js';
import { convert } from './commands/convert.js';
import { runDemo } from './commands/demo.js';
import { addExitsToFile, HEAD_CHOICES } from './commands/early-exit-add.js';
import { formatInspection, inspectModel } from './commands/inspect.js';
import { predict } from './commands/predict.js';
import { formatFlops } from './report-files.js';
import { replaceSection } from './timing.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

const backendOption = () =>
  new Option('--backend <name>', 'tfjs backend to run on').choices(BACKEND_NAMES as string[]).default('wasm');

/** Builds the `dynn` command line. `out` and `err` receive what it prints. */
export function buildProgram(out: (text: string) => void, err: (text: string) => void): Command {
  const program = new Command('dynn')
    .description('dynn: dynamic neural networks for TensorFlow.js')
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride();

  /**
   * What every bench does with its result: prints the markdown (or the JSON with `--json`) and,
   * with `--update-docs <file>`, writes the markdown between that bench's markers in the file.
   */
  const report = async (
    opts: { json?: boolean; updateDocs?: string },
    section: string,
    markdown: string,
    result: unknown,
  ) => {
    if (opts.updateDocs) {
      const document = await readFile(opts.updateDocs, 'utf8').catch(() => '# Benchmarks\n');
      await writeFile(opts.updateDocs, replaceSection(document, section, markdown));
    }
    out(opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${markdown}\n`);
  };

  program
    .command('demo')
    .description('train a CNN on Fashion-MNIST, then report accuracy, parameters, FLOPs and throughput')
    .addOption(backendOption())
    .option('--epochs <n>', 'training epochs', positiveInt, 2)
    .option('--batch-size <n>', 'training batch size', positiveInt, 64)
    .option('--seed <n>', 'seed of weights and shuffling', positiveInt, 1)
    .option('--out <dir>', 'folder for the report (markdown + SVG)', 'reports/demo')
    .option('--train-limit <n>', 'train on the first N images only (quick runs)', positiveInt)
    .option('--test-limit <n>', 'evaluate on the first N test images only (quick runs)', positiveInt)
    .option('--no-progress', 'no progress bar')
    .action(async (opts) => {
      const result = await runDemo({ ...opts, backend: opts.backend as BackendName }, (line) =>
        err(`${line}\n`),
      );
      out(
        [
          `test accuracy: ${(result.testAccuracy * 100).toFixed(2)}%`,
          `parameters: ${result.params.toLocaleString('en-US')}`,
          `FLOPs per image: ${formatFlops(result.flopsPerImage)}`,
          `throughput: ${result.imagesPerSecond.toFixed(0)} images/s (batch 256, ${result.backend})`,
          `training: ${result.trainSeconds.toFixed(1)} s`,
          `report: ${result.reportDir}`,
          '',
        ].join('\n'),
      );
    });

  program
    .command('inspect')
    .description('print the nodes, shapes, parameters and FLOPs of a dynn model')
    .argument('<model.json>', 'dynn model file')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const inspection = await inspectModel(file);
      out(opts.json ? `${JSON.stringify(inspection, null, 2)}\n` : `${formatInspection(inspection)}\n`);
    });

  program
    .command('predict')
    .description('run a dynn model on a JSON array input and print the outputs')
    .argument('<model.json>', 'dynn model file')
    .requiredOption('--input <file.json>', 'JSON input: a nested array, or arrays by input name')
    .addOption(backendOption())
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { input: string; backend: BackendName; json?: boolean }) => {
      const prediction = await predict(file, opts.input, opts.backend);
      if (opts.json) {
        out(`${JSON.stringify(prediction)}\n`);
      } else {
        for (const [name, { shape, values }] of Object.entries(prediction)) {
          out(`${name} [${shape.join(', ')}]:\n${JSON.stringify(values)}\n`);
        }
      }
    });

  program
    .command('convert')
    .description('convert a tfjs-layers / Keras model.json (+ weight shards) into a dynn model')
    .argument('<model.json>', 'tfjs-layers model file')
    .argument('<out-dir>', 'folder to write the dynn model to')
    .action(async (source: string, outDir: string) => {
      const result = await convert(source, outDir);
      out(
        `wrote ${result.file}: ${result.nodes} nodes, ${result.params.toLocaleString('en-US')} parameters\n`,
      );
    });

  program
    .command('early-exit')
    .description('early-exit networks: insert exits into a saved model')
    .command('add')
    .description('insert early exits into a dynn model and save the multi-exit model')
    .argument('<model.json>', 'dynn model file')
    .argument('<out-dir>', 'folder to write the model with exits to')
    .option('--at <nodes>', 'comma-separated node names to put an exit after')
    .option('--every <k>', 'an exit after every k-th layer with parameters', positiveInt)
    .addOption(new Option('--head <kind>', 'exit head').choices(HEAD_CHOICES as string[]).default('linear'))
    .option('--halting', 'add a learned halting head to every exit')
    .action(
      async (
        source: string,
        outDir: string,
        opts: { at?: string; every?: number; head: ExitHeadKind; halting?: boolean },
      ) => {
        if ((opts.at === undefined) === (opts.every === undefined)) {
          throw new InvalidArgumentError('give exactly one of --at <nodes> or --every <k>');
        }
        const result = await addExitsToFile(source, outDir, {
          ...(opts.at ? { at: opts.at.split(',').map((name) => name.trim()) } : {}),
          ...(opts.every ? { every: opts.every } : {}),
          head: opts.head,
          halting: opts.halting ?? false,
        });
        out(`wrote ${result.file} with ${result.exits.length} exits: ${result.exits.join(', ')}\n`);
      },
    );

  const bench = program.command('bench').description('measure dynn against its baselines, side by side');
  bench
    .command('core')
    .description(
      'MLP and demo CNN in dynn vs tfjs-layers on wasm: inference (batch 1, 256) and a training step (batch 64)',
    )
    .option('--json', 'print JSON')
    .option('--warmup <n>', 'untimed runs before timing', positiveInt, 5)
    .option('--repeats <n>', 'timed runs per case (the median is reported)', positiveInt, 20)
    .option('--update-docs <file>', 'write the table into this markdown file (between bench:core markers)')
    .action(async (opts: { json?: boolean; warmup: number; repeats: number; updateDocs?: string }) => {
      const result = await runBenchCore({ warmup: opts.warmup, repeats: opts.repeats }, (label) =>
        err(`measuring ${label}\n`),
      );
      await report(opts, 'bench:core', benchCoreMarkdown(result), result);
    });
  bench
    .command('early-exit')
    .description(
      'a Fashion-MNIST CNN with three exits on wasm: the static network vs the calibrated dynamic one on the test set',
    )
    .option('--json', 'print JSON')
    .option('--epochs <n>', 'training epochs', positiveInt, 2)
    .option('--out <dir>', 'folder for the Pareto curve (JSON + SVG) and the result', 'reports/early-exit')
    .option('--no-progress', 'no progress bar')
    .option(
      '--update-docs <file>',
      'write the table into this markdown file (between bench:early-exit markers)',
    )
    .action(
      async (opts: {
        json?: boolean;
        epochs: number;
        out: string;
        progress: boolean;
        updateDocs?: string;
      }) => {
        const run = await runBenchEarlyExit(
          { epochs: opts.epochs, out: opts.out, progress: opts.progress },
          (line) => err(`${line}\n`),
        );
        await report(opts, 'bench:early-exit', benchEarlyExitMarkdown(run), run.result);
      },
    );

  bench
    .command('early-exit-text')
    .description(
      'a character-level transformer on Austen with an exit after every block sharing one output head, on wasm: bits per character, blocks used, FLOPs and time at three operating points against the static network',
    )
    .option('--json', 'print JSON')
    .option('--steps <n>', 'training steps', positiveInt, 800)
    .option('--test-windows <n>', 'test windows measured (one next character each)', positiveInt, 2048)
    .option(
      '--out <dir>',
      'folder for result.json, the sweep and the BPC-versus-depth chart',
      'reports/early-exit-text',
    )
    .option('--no-progress', 'no progress bar')
    .option(
      '--update-docs <file>',
      'write the table into this markdown file (between bench:early-exit-text markers)',
    )
    .action(
      async (opts: {
        json?: boolean;
        steps: number;
        testWindows: number;
        out: string;
        progress: boolean;
        updateDocs?: string;
      }) => {
        const run = await runBenchEarlyExitText(
          { steps: opts.steps, testWindows: opts.testWindows, out: opts.out, progress: opts.progress },
          (line) => err(`${line}\n`),
        );
        await report(opts, 'bench:early-exit-text', benchEarlyExitTextMarkdown(run), run.result);
      },
    );

  return program;
}

/** Runs the CLI with `argv` (as `process.argv`); returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  // The CLI is an application: silence tfjs's "install tfjs-node" banner (tfjs-node cannot be
  // installed where dynn targets) by running tfjs in production mode.
  tf.env().set('PROD', true);
  const out = (text: string) => process.stdout.write(text);
  const err = (text: string) => process.stderr.write(text);
  try {
    await buildProgram(out, err).parseAsync([...argv]);
    return 0;
  } catch (error) {
    const e = error as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) return e.exitCode ?? 1;
    err(`dynn: ${isDynnError(error) ? `${error.message} [${error.code}]` : (error as Error).message}\n`);
    return 1;
  }
}
