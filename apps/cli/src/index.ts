/**
 * `@dynn/cli`: the `dynn` command. As a library it exports what a plugin package needs to add its
 * own tools, benches and demos to `dynn` (loaded with `dynn --plugin <module>`), and the bench
 * envelope every `dynn bench ... --json` prints.
 *
 * @packageDocumentation
 */
export type { BenchEnvelope, BenchHead, BenchMachine } from './bench-envelope.js';
export { measuredOn } from './bench-envelope.js';
export type {
  CliArgument,
  CliBench,
  CliBenchContext,
  CliBenchOutput,
  CliCommand,
  CliCommandContext,
  CliContribution,
  CliDemo,
  CliDemoContext,
  CliIo,
  CliOption,
  CliRunContext,
} from './contribution.js';
export { defineCliContribution } from './contribution.js';
export type { TimingOptions } from './timing.js';
export { timeMedian, timeSideBySide } from './timing.js';
