import { coreOps, definePlugin, type OpDef, type Plugin } from '@dynn/core';
import { exportPass } from './export-sub-network.js';
import { nestPass, SORTED_NET_PLUGIN } from './nest.js';
import { nestedOp } from './nested-op.js';
import { residualOp } from './residual-op.js';

/** Options of {@link sortedNet}. */
export interface SortedNetOptions {
  /**
   * Ops of other plugins that nested layers may wrap (core's are always included), e.g.
   * `earlyExit().ops`.
   */
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  ops?: readonly OpDef<any>[];
}

/**
 * The sorted-net plugin: the ops `sorted-net.Nested` (a layer on a prefix of its channels, the
 * width chosen per call) and `sorted-net.Residual` (a depth-nested residual block), and the passes
 * `sorted-net.nest` (a graph to a nested one) and `sorted-net.export` (one sub-network to a plain,
 * smaller graph). Plain data: pass it to `createRuntime({ plugins: [sortedNet()] })`.
 *
 * @example
 * ```ts
 * const runtime = createRuntime({ plugins: [sortedNet()] });
 * const nested = await nestModel(model, { multiple: 4 });
 * await nested.run(x, { options: subNetworkOptions({ width: 0.5, depth: 1 }) });
 * ```
 */
export function sortedNet(options: SortedNetOptions = {}): Plugin {
  return definePlugin({
    ...SORTED_NET_PLUGIN,
    ops: [nestedOp([...coreOps, ...(options.ops ?? [])]), residualOp],
    passes: [nestPass, exportPass],
  });
}
