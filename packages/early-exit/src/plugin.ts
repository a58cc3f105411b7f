import { definePlugin, type Plugin } from '@dynn/core';
import { EARLY_EXIT_PLUGIN, exitOp } from './exit.js';
import { insertExitsPass } from './insert-exits.js';

/**
 * The early-exit plugin: the op `early-exit.Exit` and the pass `early-exit.insert-exits`. Plain
 * data: pass it to `createRuntime({ plugins: [earlyExit()] })`.
 *
 * @example
 * ```ts
 * const runtime = createRuntime({ plugins: [earlyExit()] });
 * const graph = runtime.pass('early-exit.insert-exits').run(backbone, { every: 1 });
 * ```
 */
export function earlyExit(): Plugin {
  return definePlugin({ ...EARLY_EXIT_PLUGIN, ops: [exitOp], passes: [insertExitsPass] });
}
