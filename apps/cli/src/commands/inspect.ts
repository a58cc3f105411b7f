import { BATCH, type CompiledGraph, channelGroups, compileGraph, loadModel, type Runtime } from '@dynn/core';
import { formatFlops, markdownTable } from '../report-files.js';

type Shape = (number | string)[];

/** One node as `dynn inspect` prints it: every node of the graph, sub-graph nodes included. */
export interface InspectedNode {
  /** The node's name; inside a sub-graph, its full path (`rnn/body/cell`). */
  name: string;
  /** The enclosing node's path for a sub-graph node; absent at the top. */
  parent?: string;
  op: string;
  /** The values it reads (inside a sub-graph, the sub-graph's own value names). */
  inputs: string[];
  /** Symbolic shape of its first output (`batch`, `time`...). */
  outputShape: Shape;
  /** Parameter elements it declares, its sub-graphs' included. */
  params: number;
  /**
   * FLOPs for one input row, its sub-graphs' included; for a sub-graph node, one call of its
   * sub-graph. Symbolic dimensions other than `batch` count as 1 ({@link Inspection.unsizedDims}).
   */
  flops: number;
}

/** One group of coupled channels, as `dynn inspect` lists it (see `channelGroups` in `@dynn/core`). */
export interface InspectedChannelGroup {
  /** The group's id: what `core.remove-channels` takes as `group`. */
  id: number;
  /** Its channels. */
  size: number;
  /** How many of them cannot change. */
  fixed: number;
  /** The nodes whose parameters hold its channels, in graph order. */
  layers: string[];
  /** Why channels are fixed (graph inputs or outputs, barriers). */
  blockers: string[];
  /** Whether removing channels equals masking them (no op mixes them). */
  exact: boolean;
}

/** What `dynn inspect --json` prints. */
export interface Inspection {
  file: string;
  inputs: { name: string; dtype: string; shape: Shape }[];
  outputs: { name: string; dtype: string; shape: Shape }[];
  /** Every node, each sub-graph's nodes right after the node that holds them. */
  nodes: InspectedNode[];
  /** Parameter elements of the model (each counted once). */
  totalParams: number;
  /** FLOPs for one input row through every node: the top nodes' sum (they include their sub-graphs). */
  totalFlops: number;
  /** Symbolic dimensions other than `batch` (`time`...), counted as 1 in the FLOPs. */
  unsizedDims: string[];
  /** The groups of channels that move together: what structured pruning and nested widths change. */
  channelGroups: InspectedChannelGroup[];
  /** Nodes whose op declares no channels: no channel crosses them. */
  channelBarriers: string[];
}

/** Every compiled node, sub-graph nodes after their parent: {@link Model.costs}' order. */
function walk(graph: CompiledGraph): { path: string; inputs: string[]; shape: Shape }[] {
  return graph.nodes.flatMap((c) => [
    { path: c.path, inputs: [...c.node.inputs], shape: [...(c.outputs[0]?.shape ?? [])] },
    ...c.subGraphs.flatMap((sub) => walk(sub.compiled)),
  ]);
}

/**
 * Loads a dynn model file with `runtime` (its plugins' ops) and lists its nodes, sub-graph nodes
 * after the node that holds them, with symbolic shapes, parameters and FLOPs per row.
 */
export async function inspectModel(runtime: Runtime, file: string): Promise<Inspection> {
  const model = await loadModel(runtime, file);
  try {
    const costs = model.costs(1);
    // The costs' shapes are concrete (every symbolic dimension sized); the compiled graph's are
    // the symbolic ones the graph declares, which is what a reader of the file sees.
    const compiled = walk(compileGraph(model.runtime, model.graph));
    const unsized = new Set<string>();
    const nodes = costs.map((cost, i): InspectedNode => {
      const c = compiled[i];
      if (c?.path !== cost.name) {
        throw new Error(`inspect: node ${i} is '${cost.name}' in the costs but '${c?.path}' compiled`);
      }
      for (const d of c.shape) if (typeof d === 'string' && d !== BATCH) unsized.add(d);
      return {
        name: cost.name,
        ...(cost.parent === undefined ? {} : { parent: cost.parent }),
        op: cost.op,
        inputs: c.inputs,
        outputShape: c.shape,
        params: cost.params,
        flops: cost.flops,
      };
    });
    for (const info of model.graph.inputs) {
      for (const d of info.shape) if (typeof d === 'string' && d !== BATCH) unsized.add(d);
    }
    const analysis = channelGroups(model.runtime, model.graph);
    return {
      file,
      inputs: model.graph.inputs,
      outputs: model.graph.outputs,
      nodes,
      totalParams: model.paramCount,
      totalFlops: nodes.filter((n) => n.parent === undefined).reduce((s, n) => s + n.flops, 0),
      unsizedDims: [...unsized],
      channelGroups: analysis.groups.map((g) => ({
        id: g.id,
        size: g.size,
        fixed: g.fixed.length,
        layers: [...new Set(g.params.flatMap((p) => (p.owners ?? []).map((o) => o.node)))],
        blockers: g.blockers,
        exact: g.exact,
      })),
      channelBarriers: analysis.barriers.map((b) => `${b.node} (${b.op})`),
    };
  } finally {
    model.dispose();
  }
}

/**
 * Formats an inspection as a readable table: sub-graph nodes indented under the node that holds
 * them, whose row already counts their parameters and FLOPs.
 */
export function formatInspection(inspection: Inspection): string {
  const shape = (s: Shape) => `[${s.join(', ')}]`;
  const depth = new Map<string, number>();
  const rows = inspection.nodes.map((n) => {
    const level = n.parent === undefined ? 0 : (depth.get(n.parent) ?? 0) + 1;
    depth.set(n.name, level);
    return [`${'  '.repeat(level)}${n.name}`, n.op, shape(n.outputShape), n.params, formatFlops(n.flops)];
  });
  const nested = inspection.nodes.some((n) => n.parent !== undefined);
  const notes = [
    ...(nested
      ? [
          'Indented rows are sub-graph nodes, for one call of their sub-graph; their parameters and FLOPs',
          'are already in the row of the node that holds them (counted once in the total).',
        ]
      : []),
    ...(inspection.unsizedDims.length > 0
      ? [`FLOPs per row take ${inspection.unsizedDims.map((d) => `${d} = 1`).join(', ')}.`]
      : []),
  ];
  const lines = [
    `model: ${inspection.file}`,
    `inputs: ${inspection.inputs.map((i) => `${i.name} ${i.dtype}${shape(i.shape)}`).join(', ')}`,
    `outputs: ${inspection.outputs.map((o) => `${o.name} ${o.dtype}${shape(o.shape)}`).join(', ')}`,
    '',
    markdownTable(['node', 'op', 'output shape', 'params', 'FLOPs per row'], rows),
    '',
    `total: ${inspection.totalParams.toLocaleString('en-US')} parameters, ${formatFlops(inspection.totalFlops)} per row`,
    ...notes,
    '',
    'channel groups (channels that move together; `core.remove-channels` takes the id):',
    '',
    markdownTable(
      ['group', 'channels', 'fixed', 'layers', 'why fixed'],
      inspection.channelGroups.map((g) => [
        g.id,
        `${g.size}${g.exact ? '' : ' (mixed)'}`,
        g.fixed,
        g.layers.join(', '),
        g.blockers.join('; ') || '-',
      ]),
    ),
    ...(inspection.channelBarriers.length > 0
      ? [`barriers (ops that declare no channels): ${inspection.channelBarriers.join(', ')}`]
      : []),
    ...(inspection.channelGroups.some((g) => !g.exact)
      ? ['(mixed): an op mixes these channels (a norm, a softmax); removing them changes the others.']
      : []),
  ];
  return lines.join('\n');
}
