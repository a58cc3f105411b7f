import { definePlugin, type Plugin } from '@dynn/core';
import { EARLY_EXIT_PLUGIN, exitOp } from './exit.js';
import { removeExitsPass } from './exits.js';
import { insertExitsPass } from './insert-exits.js';
import { lastPositionPass } from './last-position.js';

/**
 * The early-exit plugin: the op `early-exit.Exit` and the passes `early-exit.insert-exits`,
 * `early-exit.remove-exits` and `early-exit.last-position`. Plain data: pass it to
 * `createRuntime({ plugins: [earlyExit()] })`, then run the passes with `runPass` or `applyPass`.
 *
 * @example
 * ```ts
 * const runtime = createRuntime({ plugins: [earlyExit()] });
 * const { graph } = runPass(runtime, 'early-exit.insert-exits', backbone, { every: 1 });
 * ```
 */
export function earlyExit(): Plugin {
  return definePlugin({
    ...EARLY_EXIT_PLUGIN,
    ops: [exitOp],
    passes: [insertExitsPass, removeExitsPass, lastPositionPass],
  });
}
