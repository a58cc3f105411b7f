import { DynnError, type Graph } from '@dynn/core';
import { NESTED_OP, type NestedAttrs } from './nested-op.js';
import { readSubNetwork, type SubNetwork, subNetworkOptions } from './options.js';
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

/**
 * Checks a sub-network against a nested graph's {@link Nesting}: width knobs, depth stages and
 * elastic layers it names must exist, and kernel sizes must be ones the layers take. Throws an
 * `INVALID_OPTION` {@link DynnError} listing what the graph has.
 */
export function checkSubNetwork(nesting: Nesting, sub: SubNetwork): void {
  const { width, depth, kernel } = readSubNetwork(subNetworkOptions(sub));
  if (width !== undefined && typeof width !== 'number') {
    const known = new Set(nesting.knobs.map((k) => k.name));
    for (const knob of Object.keys(width)) {
      if (!known.has(knob)) {
        throw new DynnError(
          'INVALID_OPTION',
          `Width knob '${knob}' is not in this model; its knobs are ${[...known].join(', ') || 'none'}.`,
        );
      }
    }
  }
  if (Array.isArray(depth) && depth.length !== nesting.stages.length) {
    throw new DynnError(
      'INVALID_OPTION',
      `depth lists ${depth.length} stages, but this model has ${nesting.stages.length}; give one number per stage or one for all.`,
    );
  }
  if (kernel !== undefined) {
    const entries =
      typeof kernel === 'number'
        ? nesting.kernels.map((k) => [k.node, kernel] as const)
        : Object.entries(kernel);
    for (const [node, size] of entries) {
      const layer = nesting.kernels.find((k) => k.node === node);
      if (layer === undefined) {
        throw new DynnError(
          'INVALID_OPTION',
          `'${node}' is not an elastic layer of this model; they are ${nesting.kernels.map((k) => k.node).join(', ') || 'none'}.`,
        );
      }
      if (!layer.sizes.includes(size)) {
        throw new DynnError(
          'INVALID_OPTION',
          `Kernel ${size} for '${node}': it takes ${layer.sizes.join(', ')}.`,
          { node },
        );
      }
    }
  }
}
