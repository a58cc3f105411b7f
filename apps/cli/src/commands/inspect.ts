import { loadModel, type Runtime } from '@dynn/core';
import { formatFlops, markdownTable } from '../report-files.js';

/** One node as `dynn inspect` prints it. */
export interface InspectedNode {
  name: string;
  op: string;
  inputs: string[];
  outputShape: (number | string)[];
  params: number;
  flops: number;
}

/** What `dynn inspect --json` prints. */
export interface Inspection {
  file: string;
  inputs: { name: string; dtype: string; shape: (number | string)[] }[];
  outputs: { name: string; dtype: string; shape: (number | string)[] }[];
  nodes: InspectedNode[];
  totalParams: number;
  /** FLOPs for one input row through every node. */
  totalFlops: number;
}

/**
 * Loads a dynn model file with `runtime` (its plugins' ops) and lists its nodes with shapes,
 * parameters and FLOPs per row.
 */
export async function inspectModel(runtime: Runtime, file: string): Promise<Inspection> {
  const model = await loadModel(runtime, file);
  try {
    const costs = model.costs(1);
    const nodes = model.graph.nodes.map((node, i) => ({
      name: node.name,
      op: node.op,
      inputs: node.inputs,
      outputShape: model.values.get(node.outputs[0]!)!.shape,
      params: costs[i]!.params,
      flops: costs[i]!.flops,
    }));
    return {
      file,
      inputs: model.graph.inputs,
      outputs: model.graph.outputs,
      nodes,
      totalParams: model.paramCount,
      totalFlops: nodes.reduce((s, n) => s + n.flops, 0),
    };
  } finally {
    model.dispose();
  }
}

/** Formats an inspection as a readable table. */
export function formatInspection(inspection: Inspection): string {
  const shape = (s: (number | string)[]) => `[${s.join(', ')}]`;
  const lines = [
    `model: ${inspection.file}`,
    `inputs: ${inspection.inputs.map((i) => `${i.name} ${i.dtype}${shape(i.shape)}`).join(', ')}`,
    `outputs: ${inspection.outputs.map((o) => `${o.name} ${o.dtype}${shape(o.shape)}`).join(', ')}`,
    '',
    markdownTable(
      ['node', 'op', 'output shape', 'params', 'FLOPs per row'],
      inspection.nodes.map((n) => [n.name, n.op, shape(n.outputShape), n.params, formatFlops(n.flops)]),
    ),
    '',
    `total: ${inspection.totalParams.toLocaleString('en-US')} parameters, ${formatFlops(inspection.totalFlops)} per row`,
  ];
  return lines.join('\n');
}
