import * as tf from '@tensorflow/tfjs-core';
import { channelOfPosition } from './channel-axes.js';
import { compileGraph, compileNode } from './compile.js';
import { DynnError } from './errors.js';
import type { Graph, GraphNode } from './ir.js';
import { definePass, type PassContext, type PassResult } from './plugin.js';
import { contextWeight, gatherAxes } from './remove-channels.js';
import { requiredTensors } from './tensor-owners.js';

/** Options of the pass `core.split-layer`. */
export interface SplitLayerOptions {
  /** The node to split (a node of the top graph with one output, e.g. a Dense or a Conv2D). */
  node: string;
  /** Output channels of each part, in order; they sum to the node's output channels. */
  sizes: readonly number[];
}

function freshName(base: string, taken: Set<string>): string {
  let name = base;
  for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
  taken.add(name);
  return name;
}

/**
 * Splits a layer along its output channels into parts of the given sizes, joined by a
 * `core.Concat` that takes over the layer's name and output: each part holds the slices of the
 * weights for its channels (from the op's channel declaration), so the graph computes the same
 * outputs. Only a layer whose output channels come from its own weights splits this way (Dense,
 * Conv2D); one whose output channels follow its input (Depthwise, BatchNorm) is refused.
 * With `core.reorder-channels` first, parts take any subset of channels (MoEfication's experts).
 */
export function splitLayer(graph: Graph, options: SplitLayerOptions, context: PassContext): PassResult {
  const pass = 'core.split-layer';
  const { runtime } = context;
  const fail = (what: string, node?: string): never => {
    throw new DynnError('INVALID_OPTION', `${pass}: ${what}.`, node === undefined ? {} : { node });
  };
  const compiled = compileGraph(runtime, graph);
  const c = compiled.nodes.find((n) => n.node.name === options?.node);
  if (c === undefined) return fail(`the graph has no node ${JSON.stringify(options?.node)}`);
  const name = c.node.name;
  if (c.node.outputs.length !== 1)
    fail(
      `node '${name}' (${c.def.type}) has ${c.node.outputs.length} outputs; only a one-output layer splits`,
      name,
    );
  if (c.def.channels === undefined) fail(`node '${name}' (${c.def.type}) declares no channels`, name);
  const declaration = c.def.channels!(c.attrs, c.inputs, c.outputs);
  const onOutput = declaration.axes
    .filter(
      (a) => a.tensor.kind === 'output' && !('graph' in a.tensor && a.tensor.graph) && a.tensor.index === 0,
    )
    .sort((a, b) => b.axis - a.axis)[0];
  const rank = c.outputs[0]!.shape.length;
  const outAxis = onOutput === undefined ? -1 : onOutput.axis < 0 ? onOutput.axis + rank : onOutput.axis;
  const space = onOutput?.space;
  const total = space === undefined ? 0 : declaration.spaces[space]!;
  const plain =
    onOutput !== undefined && channelOfPosition(onOutput, 1) === 1 && channelOfPosition(onOutput, 0) === 0;
  if (onOutput === undefined || !plain || c.outputs[0]!.shape[outAxis] !== total) {
    fail(`node '${name}' (${c.def.type}) has no output channel axis to split along`, name);
  }
  const fromInput = declaration.axes.some((a) => a.space === space && a.tensor.kind === 'input');
  if (fromInput)
    fail(
      `the output channels of node '${name}' (${c.def.type}) follow its input; split the layer that makes them`,
      name,
    );
  const sizes = options.sizes;
  const validSizes =
    Array.isArray(sizes) &&
    sizes.length >= 2 &&
    sizes.every((s) => Number.isInteger(s) && s >= 1) &&
    sizes.reduce((a, b) => a + b, 0) === total;
  if (!validSizes)
    fail(
      `'sizes' must be 2 or more positive integers summing to ${total} (node '${name}'); got ${JSON.stringify(sizes)}`,
      name,
    );
  const onSpace = declaration.axes.filter(
    (a) => a.space === space && (a.tensor.kind === 'param' || a.tensor.kind === 'state'),
  );
  for (const t of [...c.params, ...c.state]) {
    if (
      t.info.name !== `${name}/${t.local}` &&
      onSpace.some((a) => 'name' in a.tensor && a.tensor.name === t.local)
    ) {
      fail(`node '${name}' shares '${t.info.name}' with other nodes; a shared tensor cannot be split`, name);
    }
  }

  const nodeNames = new Set(graph.nodes.map((n) => n.name));
  const valueNames = new Set(compiled.values.keys());
  const output = c.node.outputs[0]!;
  const parts: GraphNode[] = [];
  const weights = new Map<string, tf.Tensor>();
  try {
    let start = 0;
    for (const size of sizes) {
      const wanted = {
        ...c.outputs[0]!,
        shape: c.outputs[0]!.shape.map((d, axis) => (axis === outAxis ? size : d)),
      };
      const attrs = c.def.resize
        ? c.def.resize(c.attrs, c.inputs, [wanted], { ...declaration.spaces, [space!]: size })
        : c.attrs;
      const part: GraphNode = {
        name: freshName(`${name}_part${parts.length}`, nodeNames),
        op: c.node.op,
        inputs: [...c.node.inputs],
        outputs: [freshName(`${output}_part${parts.length}`, valueNames)],
        attrs: { ...c.node.attrs, ...attrs },
      };
      const partCompiled = compileNode(runtime, part, c.inputs);
      const produced = partCompiled.outputs[0]!;
      if (produced.shape[outAxis] !== size) {
        fail(
          `node '${name}' (${c.def.type}) cannot make a part of ${size} channels: its op declares no resize`,
          name,
        );
      }
      for (const t of [...partCompiled.params, ...partCompiled.state]) {
        const original = [...c.params, ...c.state].find(
          (o) => o.local === t.local && o.variant === t.variant,
        )!;
        const source = contextWeight(context, original.info.name, pass);
        if (original.info.name === t.info.name) continue;
        const steps = onSpace
          .filter((a) => 'name' in a.tensor && a.tensor.name === t.local)
          .map((a) => {
            const axis = a.axis < 0 ? a.axis + source.rank : a.axis;
            const indices = Int32Array.from({ length: source.shape[axis]! }, (_, j) => j).filter((j) => {
              const channel = channelOfPosition(a, j);
              return channel >= start && channel < start + size;
            });
            return { axis, indices };
          });
        weights.set(t.info.name, steps.length === 0 ? tf.clone(source) : gatherAxes(source, steps));
      }
      parts.push(part);
      start += size;
    }
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
  const join: GraphNode = {
    name,
    op: 'core.Concat',
    inputs: parts.map((p) => p.outputs[0]!),
    outputs: [output],
    attrs: { axis: outAxis },
  };
  const nodes = graph.nodes.flatMap((n) => (n.name === name ? [...parts, join] : [n]));
  const rewritten: Graph = { ...graph, nodes, params: [], state: [] };
  const tensors = requiredTensors(compileGraph(runtime, rewritten));
  return { graph: { ...rewritten, params: tensors.params, state: tensors.state }, weights };
}

/** The pass `core.split-layer` ({@link splitLayer}). */
export const splitLayerPass = definePass<SplitLayerOptions>({
  name: 'core.split-layer',
  description: 'Splits a layer along its output channels into parts joined by a Concat (same outputs).',
  run: splitLayer,
});
