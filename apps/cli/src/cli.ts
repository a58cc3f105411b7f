import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  BACKEND_NAMES,
  type BackendName,
  createRuntime,
  isDynnError,
  type QuantizationDType,
  type Runtime,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { Command, InvalidArgumentError, Option } from 'commander';
import { benchEnvelope } from './bench-envelope.js';
import { convert, formatConvertResult } from './commands/convert.js';
import { QUICK_DEMO, runDemo } from './commands/demo.js';
import { formatInspection, inspectModel } from './commands/inspect.js';
import { predict } from './commands/predict.js';
import type { CliBench, CliContribution, CliIo, CliOption } from './contribution.js';
import { BUILT_IN_CONTRIBUTIONS, loadContribution, pluginSpecifiers } from './registry.js';
import { formatFlops } from './report-files.js';
import { replaceSection } from './timing.js';

const packageJson = createRequire(import.meta.url)('../package.json') as { version: string };

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function finiteNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('expected a number');
  return n;
}

const commaList = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');

const QUANTIZE_CHOICES: QuantizationDType[] = ['uint8', 'uint16', 'float16'];

const backendOption = () =>
  new Option('--backend <name>', 'tfjs backend to run on').choices(BACKEND_NAMES as string[]).default('wasm');

/** A contribution's plain option as a commander option. */
function toOption(spec: CliOption): Option {
  const option = new Option(spec.flags, spec.description);
  if (spec.parse === 'positive-int') option.argParser(positiveInt);
  if (spec.parse === 'number') option.argParser(finiteNumber);
  if (spec.parse === 'list') option.argParser(commaList);
  if (spec.choices) option.choices(spec.choices as string[]);
  if (spec.default !== undefined) option.default(spec.default);
  return option;
}

function addOptions(command: Command, options: readonly CliOption[] = []): Command {
  for (const spec of options) command.addOption(toOption(spec));
  return command;
}

/** Common options of every `dynn bench ...`. */
function addBenchOptions(command: Command, section: string): Command {
  return command
    .option('--json', 'print the result as JSON (the bench envelope)')
    .option('--quick', 'a smoke-sized run of a few seconds (CI), not a measurement to quote')
    .option('--no-progress', 'no progress bar')
    .option('--update-docs <file>', `write the markdown into this file (between ${section} markers)`);
}

/**
 * Builds the `dynn` command line from the built-in commands and the packages' contributions.
 * `out` and `err` receive what it prints.
 */
export function buildProgram(
  out: (text: string) => void,
  err: (text: string) => void,
  contributions: readonly CliContribution[] = BUILT_IN_CONTRIBUTIONS,
): Command {
  const io: CliIo = { out, log: (line) => err(`${line}\n`) };
  // Created lazily: a plugin whose ops clash with another's should fail the command that needs
  // the runtime, not `--help`.
  let runtime: Runtime | undefined;
  const cliRuntime = () => {
    runtime ??= createRuntime({ plugins: contributions.flatMap((c) => c.plugins ?? []) });
    return runtime;
  };
  const program = new Command('dynn')
    .description('dynn: dynamic neural networks for TensorFlow.js')
    .version(packageJson.version, '-V, --version', 'print the version of dynn')
    .option('--plugin <module>', 'load the CLI commands of a plugin package (repeatable)')
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride()
    // A command's options stop at its subcommand: `dynn demo early-exit --out x` is the
    // subcommand's --out, not the tour's.
    .enablePositionalOptions();

  addDemoCommands(program, contributions, io);

  program
    .command('inspect')
    .description('print the nodes, shapes, parameters and FLOPs of a dynn model')
    .argument('<model.json>', 'dynn model file')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const inspection = await inspectModel(cliRuntime(), file);
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
      const prediction = await predict(cliRuntime(), file, opts.input, opts.backend);
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
    .argument('<model.json>', 'tfjs-layers model file (quantized weights included)')
    .argument('<out-dir>', 'folder to write the dynn model to')
    .addOption(
      new Option(
        '--quantize <dtype>',
        'store the weights quantized, and report size and output change',
      ).choices(QUANTIZE_CHOICES),
    )
    .action(async (source: string, outDir: string, opts: { quantize?: QuantizationDType }) => {
      const result = await convert(source, outDir, opts.quantize ? { quantize: opts.quantize } : {});
      out(`${formatConvertResult(result)}\n`);
    });

  for (const contribution of contributions) {
    if (!contribution.commands?.length) continue;
    const group = program.command(contribution.name).description(contribution.description);
    for (const spec of contribution.commands) {
      const command = group.command(spec.name).description(spec.description);
      for (const argument of spec.arguments ?? []) {
        command.argument(
          argument.optional ? `[${argument.name}]` : `<${argument.name}>`,
          argument.description,
        );
      }
      addOptions(command, spec.options).action(async (...values: unknown[]) => {
        const args = values.slice(0, spec.arguments?.length ?? 0) as (string | undefined)[];
        await spec.run({ ...io, args, options: command.opts(), runtime: cliRuntime() });
      });
    }
  }

  addBenchCommands(program, contributions, io);
  return program;
}

/** `dynn demo` (the tour, which lists the others) and `dynn demo <package>`. */
function addDemoCommands(program: Command, contributions: readonly CliContribution[], io: CliIo): void {
  const withDemo = contributions.filter((c) => c.demo !== undefined);
  const demo = program
    .command('demo')
    .description(
      `the tour: train a CNN with an early exit on Fashion-MNIST and report accuracy, FLOPs and time; ` +
        `\`dynn demo <package>\` runs one package's demo (${withDemo.map((c) => c.name).join(', ')})`,
    )
    .addOption(backendOption())
    .option('--epochs <n>', 'training epochs', positiveInt, 2)
    .option('--batch-size <n>', 'training batch size', positiveInt, 64)
    .option('--seed <n>', 'seed of weights and shuffling', positiveInt, 1)
    .option('--out <dir>', 'folder for the report (markdown + SVG)', 'reports/demo')
    .option('--train-limit <n>', 'train on the first N images only', positiveInt)
    .option('--test-limit <n>', 'evaluate on the first N test images only', positiveInt)
    .option('--quick', 'a smoke-sized run of a few seconds')
    .option('--no-progress', 'no progress bar')
    .enablePositionalOptions()
    .action(async (opts) => {
      const result = await runDemo(
        { ...opts, ...(opts.quick ? QUICK_DEMO : {}), backend: opts.backend as BackendName },
        io.log,
      );
      io.out(
        [
          `test accuracy: ${(result.testAccuracy * 100).toFixed(2)}%`,
          `parameters: ${result.params.toLocaleString('en-US')}`,
          `FLOPs per image: ${formatFlops(result.flopsPerImage)}`,
          `throughput: ${result.imagesPerSecond.toFixed(0)} images/s (batch 256, ${result.backend})`,
          `training: ${result.trainSeconds.toFixed(1)} s`,
          `report: ${result.reportDir}`,
          '',
          'More demos:',
          ...withDemo.map((c) => `  dynn demo ${c.name}: ${c.demo!.description}`),
          '',
        ].join('\n'),
      );
    });
  for (const contribution of withDemo) {
    const spec = contribution.demo!;
    const command = demo
      .command(contribution.name)
      .description(spec.description)
      .option('--quick', 'a smoke-sized run of a few seconds')
      .option('--no-progress', 'no progress bar');
    addOptions(command, spec.options).action(async () => {
      const options = command.opts();
      await spec.run({
        ...io,
        options,
        quick: options.quick === true,
        progress: options.progress !== false,
      });
    });
  }
}

/** `dynn bench <package> [variant]`, each printing or writing the one bench envelope. */
function addBenchCommands(program: Command, contributions: readonly CliContribution[], io: CliIo): void {
  const bench = program.command('bench').description('measure dynn against its baselines, side by side');
  for (const contribution of contributions) {
    const [main, ...variants] = contribution.benches ?? [];
    if (main === undefined) continue;
    const command = benchCommand(
      bench.command(contribution.name).enablePositionalOptions(),
      contribution.name,
      main,
      io,
    );
    for (const variant of variants) {
      benchCommand(command.command(variant.variant ?? ''), contribution.name, variant, io);
    }
  }
}

function benchCommand(command: Command, name: string, spec: CliBench, io: CliIo): Command {
  const id = spec.variant ? `${name}/${spec.variant}` : name;
  const section = `bench:${spec.variant ? `${name}-${spec.variant}` : name}`;
  addOptions(addBenchOptions(command.description(spec.description), section), spec.options).action(
    async () => {
      const options = command.opts() as Record<string, unknown> & {
        json?: boolean;
        quick?: boolean;
        progress?: boolean;
        updateDocs?: string;
      };
      const quick = options.quick === true;
      let output: Awaited<ReturnType<CliBench['run']>>;
      try {
        output = await spec.run({
          ...io,
          options,
          quick,
          progress: options.progress !== false && !options.json,
        });
      } catch (error) {
        // Machines reading `--json` still get the envelope, with the reason in `error`.
        if (options.json) io.out(`${JSON.stringify(benchEnvelope(id, quick, { error }), null, 2)}\n`);
        throw error;
      }
      const envelope = benchEnvelope(id, quick, output);
      const markdown = output.markdown(envelope);
      if (output.reportDir !== undefined) {
        await writeFile(join(output.reportDir, 'result.json'), `${JSON.stringify(envelope, null, 2)}\n`);
      }
      if (options.updateDocs) {
        const document = await readFile(options.updateDocs, 'utf8').catch(() => '# Benchmarks\n');
        await writeFile(options.updateDocs, replaceSection(document, section, markdown));
      }
      io.out(options.json ? `${JSON.stringify(envelope, null, 2)}\n` : `${markdown}\n`);
    },
  );
  return command;
}

/** Runs the CLI with `argv` (as `process.argv`); returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  // The CLI is an application: silence tfjs's "install tfjs-node" banner (tfjs-node cannot be
  // installed where dynn targets) by running tfjs in production mode.
  tf.env().set('PROD', true);
  const out = (text: string) => process.stdout.write(text);
  const err = (text: string) => process.stderr.write(text);
  try {
    const plugins = await Promise.all(pluginSpecifiers(argv).map((specifier) => loadContribution(specifier)));
    await buildProgram(out, err, [...BUILT_IN_CONTRIBUTIONS, ...plugins]).parseAsync([...argv]);
    return 0;
  } catch (error) {
    const e = error as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) return e.exitCode ?? 1;
    err(`dynn: ${isDynnError(error) ? `${error.message} [${error.code}]` : (error as Error).message}\n`);
    return 1;
  }
}
