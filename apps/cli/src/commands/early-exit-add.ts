import { join, resolve } from 'node:path';
import { loadModel, type Runtime, saveModel } from '@dynn/core';
import { addExits, EXIT_HEADS, type ExitHeadKind } from '@dynn/early-exit';

/** Where `dynn early-exit add` puts exits and which heads they get. */
export interface EarlyExitAddOptions {
  at?: string[];
  every?: number;
  head: ExitHeadKind;
  halting: boolean;
}

/**
 * Loads a dynn model with `runtime` (which must hold the early-exit plugin), inserts early exits (after the named nodes, or after every k-th layer) and
 * saves the multi-exit model. Exits start untrained; with every exit disabled (no early-exit run
 * options) the new model computes exactly what the original did.
 */
export async function addExitsToFile(
  runtime: Runtime,
  source: string,
  outDir: string,
  options: EarlyExitAddOptions,
): Promise<{ file: string; exits: string[] }> {
  const model = await loadModel(runtime, resolve(source));
  try {
    const withExits = addExits(model, {
      ...(options.at ? { at: options.at } : {}),
      ...(options.every ? { every: options.every } : {}),
      head: options.head,
      halting: options.halting,
    });
    try {
      await saveModel(withExits, resolve(outDir));
      const exits = withExits.graph.nodes.filter((n) => n.op === 'early-exit.Exit').map((n) => n.name);
      return { file: join(resolve(outDir), 'model.json'), exits };
    } finally {
      withExits.dispose();
    }
  } finally {
    model.dispose();
  }
}

/** Head kinds `--head` accepts. */
export const HEAD_CHOICES: readonly string[] = EXIT_HEADS;
