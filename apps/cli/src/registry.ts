import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DynnError } from '@dynn/core';
import type { CliContribution } from './contribution.js';
import { coreCli } from './packages/core.js';
import { earlyExitCli } from './packages/early-exit.js';
import { moeRouterCli } from './packages/moe-router.js';
import { sortedNetCli } from './packages/sorted-net.js';
import { sparseAttentionCli } from './packages/sparse-attention.js';

/**
 * The packages whose tools, benches and demos `dynn` offers out of the box: one entry per
 * package, each in its own file under `packages/`. A new dynn package adds itself here.
 */
export const BUILT_IN_CONTRIBUTIONS: readonly CliContribution[] = [
  coreCli,
  earlyExitCli,
  sortedNetCli,
  moeRouterCli,
  sparseAttentionCli,
];

/** Top-level commands a contribution may not take the name of. */
const RESERVED_NAMES = new Set(['bench', 'convert', 'demo', 'help', 'inspect', 'predict']);

/** The modules named by `--plugin <module>` / `--plugin=<module>` in `argv`, in order. */
export function pluginSpecifiers(argv: readonly string[]): string[] {
  const specifiers: string[] = [];
  argv.forEach((arg, i) => {
    if (arg === '--plugin' && argv[i + 1] !== undefined) specifiers.push(argv[i + 1]!);
    else if (arg.startsWith('--plugin=')) specifiers.push(arg.slice('--plugin='.length));
  });
  return specifiers;
}

function isContribution(value: unknown): value is CliContribution {
  const c = value as Partial<CliContribution> | null;
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.name === 'string' &&
    /^[a-z][a-z0-9-]*$/.test(c.name) &&
    typeof c.description === 'string'
  );
}

/**
 * Loads a third party's contribution: `specifier` is a file path, or a package (or package
 * subpath) resolved from the current folder, whose default export (or `dynnCli` export) is a
 * {@link CliContribution}.
 */
export async function loadContribution(specifier: string, from = process.cwd()): Promise<CliContribution> {
  const isPath = specifier.startsWith('.') || isAbsolute(specifier);
  const notFound = () =>
    new DynnError(
      'INVALID_OPTION',
      `--plugin ${specifier}: no such module from ${from}. Install it (npm install ${specifier}) or give a path to its file.`,
    );
  let url: string;
  try {
    url = isPath
      ? pathToFileURL(resolve(from, specifier)).href
      : pathToFileURL(createRequire(join(from, 'package.json')).resolve(specifier)).href;
  } catch {
    throw notFound();
  }
  let module: { default?: unknown; dynnCli?: unknown };
  try {
    module = await import(url);
  } catch (error) {
    const missing = (error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && isPath;
    if (missing && String((error as Error).message).includes(resolve(from, specifier))) throw notFound();
    throw error;
  }
  const contribution = [
    module.dynnCli,
    module.default,
    (module.default as { default?: unknown })?.default,
  ].find(isContribution);
  if (contribution === undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      `--plugin ${specifier}: the module exports no CLI contribution. Export one as default (or as \`dynnCli\`), made with defineCliContribution({ name, description, commands, benches, demo }) from @dynn/cli.`,
    );
  }
  if (
    RESERVED_NAMES.has(contribution.name) ||
    BUILT_IN_CONTRIBUTIONS.some((c) => c.name === contribution.name)
  ) {
    throw new DynnError(
      'INVALID_OPTION',
      `--plugin ${specifier}: its name '${contribution.name}' is taken by a dynn command or built-in package; rename the contribution.`,
    );
  }
  return contribution;
}
