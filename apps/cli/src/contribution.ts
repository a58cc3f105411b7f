import type { Plugin, Runtime } from '@dynn/core';
import type { BenchHead } from './bench-envelope.js';

/**
 * What a package adds to the `dynn` command: plain objects, no commander in sight, so a plugin
 * package can describe its tools without depending on the CLI's argument parser. The CLI turns
 * them into `dynn <name> <verb>`, `dynn bench <name> [variant]` and `dynn demo <name>`.
 */

/** One option of a contributed command, bench or demo. */
export interface CliOption {
  /** Commander-style flags: `--every <k>`, `--halting`, `--head <kind>`. */
  flags: string;
  /** One line for `--help`. */
  description: string;
  /** Value when the option is not given. */
  default?: string | number | boolean;
  /** The only values accepted. */
  choices?: readonly string[];
  /** How the value is read: a positive integer, a number, or a comma-separated list (default: text). */
  parse?: 'positive-int' | 'number' | 'list';
}

/** One positional argument of a contributed command. */
export interface CliArgument {
  /** Name shown in `--help` (`model.json`). */
  name: string;
  /** One line for `--help`. */
  description: string;
  /** When true, the argument may be left out. */
  optional?: boolean;
}

/** Where a command writes: `out` for results (stdout), `log` for progress and notes (stderr). */
export interface CliIo {
  /** Writes results (stdout); `text` carries its own newlines. */
  out(text: string): void;
  /** Writes one line of progress or notes (stderr). */
  log(line: string): void;
}

/** What a contributed command's `run` receives. */
export interface CliCommandContext extends CliIo {
  /** Positional arguments, in the order declared. */
  args: readonly (string | undefined)[];
  /** Options by camel-cased long name (`--every <k>` is `every`, `--no-progress` is `progress`). */
  options: Readonly<Record<string, unknown>>;
  /** A runtime with the ops of every contribution's plugins: load models with it. */
  runtime: Runtime;
}

/** A tool of a package: `dynn <package> <name> ...`. */
export interface CliCommand {
  /** The verb: `add` in `dynn early-exit add`. */
  name: string;
  /** One line for `--help`. */
  description: string;
  /** Positional arguments. */
  arguments?: readonly CliArgument[];
  /** Options. */
  options?: readonly CliOption[];
  /** Does the work; throw a `DynnError` (or an `Error`) to fail with exit code 1. */
  run(context: CliCommandContext): Promise<void>;
}

/** What a bench's or a demo's `run` receives. */
export interface CliRunContext extends CliIo {
  /** Options by camel-cased long name. */
  options: Readonly<Record<string, unknown>>;
  /** `--quick`: a smoke-sized run of a few seconds (CI), not a measurement to quote. */
  quick: boolean;
  /** False with `--no-progress` (and, for benches, `--json`): draw no progress bar. */
  progress: boolean;
}

/** What a bench's `run` receives. */
export type CliBenchContext = CliRunContext;

/** What a demo's `run` receives. */
export type CliDemoContext = CliRunContext;

/** What a bench measured: fields for the JSON envelope, and markdown for people and the docs. */
export interface CliBenchOutput {
  /** The bench's own fields, placed in the envelope between `machine` and `error`. */
  fields: Record<string, unknown>;
  /**
   * A markdown summary (a table), printed without `--json` and written by `--update-docs`; `head`
   * says who ran it, where and when (start it with `measuredOn(head)`).
   */
  markdown(head: BenchHead): string;
  /** Folder the bench wrote its report files to: the CLI adds the envelope there as `result.json`. */
  reportDir?: string;
}

/** A benchmark of a package: `dynn bench <package> [variant] [--json] [--quick]`. */
export interface CliBench {
  /** Variant name (`text` in `dynn bench early-exit text`); the package's first bench has none. */
  variant?: string;
  /** One line for `--help`. */
  description: string;
  /** Options beyond the common `--json`, `--quick`, `--no-progress`, `--update-docs`. */
  options?: readonly CliOption[];
  /** Runs the bench side by side against its baseline. */
  run(context: CliBenchContext): Promise<CliBenchOutput>;
}

/** A guided run of a package on real data: `dynn demo <package>`. */
export interface CliDemo {
  /** One line for `--help` and for the list `dynn demo` prints. */
  description: string;
  /** Options beyond the common `--quick` and `--no-progress`. */
  options?: readonly CliOption[];
  /** Runs the demo, printing what it measured through `out`. */
  run(context: CliDemoContext): Promise<void>;
}

/** Everything one package adds to the `dynn` command. */
export interface CliContribution {
  /** The package's short name (`early-exit`): the command group, bench and demo name. */
  name: string;
  /** One line for `--help`. */
  description: string;
  /**
   * The dynn plugins whose ops the package defines: `inspect`, `predict` and every contributed
   * command load models with a runtime holding them.
   */
  plugins?: readonly Plugin[];
  /** `dynn <name> <verb>` tools. */
  commands?: readonly CliCommand[];
  /** `dynn bench <name> [variant]` benchmarks; the first is the default. */
  benches?: readonly CliBench[];
  /** `dynn demo <name>`. */
  demo?: CliDemo;
}

/**
 * Declares a package's CLI contribution. An identity function: it only gives the object its type,
 * so a plugin package can export `export default defineCliContribution({...})` and users load it
 * with `dynn --plugin <module> ...`.
 */
export function defineCliContribution(contribution: CliContribution): CliContribution {
  return contribution;
}
