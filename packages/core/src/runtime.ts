import { DynnError } from './errors.js';
import { type Graph, splitOpType } from './ir.js';
import type { OpDef } from './op.js';
import { corePlugin } from './ops/index.js';
import { type PassDef, type Plugin, packageForDomain } from './plugin.js';

/** Options for {@link createRuntime}. */
export interface RuntimeOptions {
  /** Plugins whose ops and passes the runtime provides. The core plugin is always included. */
  plugins?: readonly Plugin[];
}

/** The ops and passes available to run, load and transform graphs. Immutable once created. */
export interface Runtime {
  /** The plugins it was built from, the core plugin first. */
  readonly plugins: readonly Plugin[];
  /** The op definition for `type`; throws `UNKNOWN_OP` naming the package to add. */
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  op(type: string, nodeName?: string): OpDef<any>;
  /** True when some plugin provides `type`. */
  hasOp(type: string): boolean;
  /** The pass named `name`; throws `UNKNOWN_OP` when no plugin provides it. */
  // biome-ignore lint/suspicious/noExplicitAny: passes of every option type.
  pass(name: string): PassDef<any>;
  /** Checks that every op of `graph` is provided at the op-set version the graph needs. */
  checkSupports(graph: Graph, file?: string): void;
}

/**
 * Creates a runtime from plugins. Nothing global changes: two runtimes with different plugins
 * can live side by side.
 *
 * @example
 * ```ts
 * const runtime = createRuntime({ plugins: [earlyExit()] });
 * ```
 */
export function createRuntime(options: RuntimeOptions = {}): Runtime {
  const plugins = [corePlugin, ...(options.plugins ?? []).filter((p) => p !== corePlugin)];
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  const ops = new Map<string, OpDef<any>>();
  // biome-ignore lint/suspicious/noExplicitAny: passes of every option type.
  const passes = new Map<string, PassDef<any>>();
  const opsets = new Map<string, Plugin>();
  for (const plugin of plugins) {
    const other = opsets.get(plugin.domain);
    if (other !== undefined) {
      throw new DynnError(
        'INVALID_GRAPH',
        `Plugins ${other.name} and ${plugin.name} both provide domain '${plugin.domain}'. Give each plugin once.`,
      );
    }
    opsets.set(plugin.domain, plugin);
    for (const op of plugin.ops) ops.set(op.type, op);
    for (const pass of plugin.passes ?? []) passes.set(pass.name, pass);
  }

  const missingOp = (type: string, nodeName?: string, file?: string): DynnError => {
    const { domain } = splitOpType(type);
    const where = nodeName ? ` (node '${nodeName}')` : '';
    const provider = opsets.get(domain);
    const fix = provider
      ? `${provider.name} (opset ${provider.opset}) has no such op; check the op name or upgrade ${provider.name}.`
      : `Install ${packageForDomain(domain)} and pass its plugin to createRuntime({ plugins: [...] }).`;
    return new DynnError('UNKNOWN_OP', `No plugin provides op '${type}'${where}. ${fix}`, {
      op: type,
      ...(nodeName ? { node: nodeName } : {}),
      ...(file ? { file } : {}),
    });
  };

  return {
    plugins,
    op(type, nodeName) {
      const def = ops.get(type);
      if (def === undefined) throw missingOp(type, nodeName);
      return def;
    },
    hasOp: (type) => ops.has(type),
    pass(name) {
      const def = passes.get(name);
      if (def === undefined) {
        throw new DynnError(
          'UNKNOWN_OP',
          `No plugin provides pass '${name}'. Known passes: ${[...passes.keys()].join(', ') || 'none'}.`,
        );
      }
      return def;
    },
    checkSupports(graph, file) {
      for (const [domain, version] of Object.entries(graph.opsets)) {
        const provider = opsets.get(domain);
        if (provider !== undefined && version > provider.opset) {
          const used = [
            ...new Set(graph.nodes.filter((n) => splitOpType(n.op).domain === domain).map((n) => n.op)),
          ];
          throw new DynnError(
            'OP_VERSION',
            `The graph needs opset ${domain} v${version} (for ${used.join(', ') || 'its ops'}), but ` +
              `${provider.name} provides v${provider.opset}. Upgrade ${provider.name}.`,
            { ...(file ? { file } : {}), ...(used[0] ? { op: used[0] } : {}) },
          );
        }
      }
      for (const node of graph.nodes) {
        if (!ops.has(node.op)) throw missingOp(node.op, node.name, file);
      }
    },
  };
}
