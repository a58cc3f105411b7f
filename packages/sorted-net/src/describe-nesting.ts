import type { Graph } from '@dynn/core';
import { NESTED_OP, type NestedAttrs } from './nested-op.js';
import { RESIDUAL_OP, type ResidualAttrs } from './residual-op.js';

/** A width knob of a nested graph: a channel group whose layers narrow together. */
export interface WidthKnob {
  /** Its name (`<node>#<space>`: the first layer space of the group), as run options name it. */
  name: string;
  /** Full number of channels. */
  size: number;
  /** Channel counts are rounded to a multiple of this. */
  multiple: number;
  /** The nested nodes it narrows. */
  nodes: string[];
}

/** A stage of depth-nested residual blocks. */
export interface DepthStage {
  /** Stage index, as `depth` lists it. */
  stage: number;
  /** Its residual blocks' nodes (the `sorted-net.Residual` ends), in order. */
  blocks: string[];
}

/** An elastic convolution. */
export interface ElasticLayer {
  /** The node, as a per-layer `kernel` choice names it. */
  node: string;
  /** The kernel sizes it takes, ascending. */
  sizes: number[];
}

/** What can change in a nested graph, per call. */
export interface Nesting {
  /** Width knobs, in graph order. */
  knobs: WidthKnob[];
  /** Depth stages, in order. */
  stages: DepthStage[];
  /** Elastic convolutions, in graph order. */
  kernels: ElasticLayer[];
}

/**
 * The width knobs, depth stages and elastic kernels of a nested graph (made by
 * `sorted-net.nest`): what a {@link SubNetwork} can choose.
 */
export function describeNesting(graph: Graph): Nesting {
  const knobs = new Map<string, WidthKnob>();
  const stages: DepthStage[] = [];
  const kernels: ElasticLayer[] = [];
  for (const node of graph.nodes) {
    if (node.op === NESTED_OP) {
      const attrs = node.attrs as NestedAttrs;
      for (const s of Object.values(attrs.spaces)) {
        const knob = knobs.get(s.knob) ?? { name: s.knob, size: s.size, multiple: s.multiple, nodes: [] };
        if (!knob.nodes.includes(node.name)) knob.nodes.push(node.name);
        knobs.set(s.knob, knob);
      }
      if (attrs.kernel !== null && attrs.kernel !== undefined)
        kernels.push({ node: attrs.kernel.key, sizes: [...attrs.kernel.sizes] });
    } else if (node.op === RESIDUAL_OP) {
      const { stage } = node.attrs as ResidualAttrs;
      while (stages.length <= stage) stages.push({ stage: stages.length, blocks: [] });
      stages[stage]!.blocks.push(node.name);
    }
  }
  return { knobs: [...knobs.values()], stages, kernels };
}
