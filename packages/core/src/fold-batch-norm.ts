import * as tf from '@tensorflow/tfjs-core';
import { compileGraph } from './compile.js';
import type { Attrs, Graph, GraphNode } from './ir.js';
import { definePass, type PassContext, type PassResult } from './plugin.js';
import { contextWeight } from './remove-channels.js';
import { requiredTensors } from './tensor-owners.js';

/** Options of the pass `core.fold-batch-norm`. */
export interface FoldBatchNormOptions {
  /** Also fold an activation that follows the batch norm into the layer (default true). */
  activations?: boolean;
}

/** Layers a following batch norm folds into, and how their kernel's last axes hold the output channels. */
const FOLDABLE = new Set(['core.Conv2D', 'core.DepthwiseConv2D', 'core.Dense']);

const PASS = 'core.fold-batch-norm';

/** Per value, the indices of the nodes that read it. */
function readersOf(graph: Graph): Map<string, number[]> {
  const readers = new Map<string, number[]>();
  graph.nodes.forEach((node, i) => {
    for (const v of node.inputs) readers.set(v, [...(readers.get(v) ?? []), i]);
  });
  return readers;
}

/**
 * Folds each inference-mode batch norm into the convolution, depthwise convolution or dense layer
 * before it (the layer's only reader, with no activation of its own): the kernel is scaled per
 * output channel by `gamma / sqrt(movingVariance + epsilon)` and the bias becomes the shift, as
 * inference converters do. An activation right after it (relu, relu6...) becomes the layer's own,
 * so the backend runs one fused kernel where there were four passes. The result computes what the
 * graph computes in inference; batch norm's training behaviour is gone, so fold a model for
 * serving (an export), not one to train further.
 */
export function foldBatchNorm(graph: Graph, options: FoldBatchNormOptions, context: PassContext): PassResult {
  const { runtime } = context;
  const foldActivations = options?.activations ?? true;
  const compiled = compileGraph(runtime, graph);
  const byName = new Map(compiled.nodes.map((c) => [c.node.name, c]));
  const readers = readersOf(graph);
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const nodes: (GraphNode | undefined)[] = graph.nodes.map((n) => ({ ...n, attrs: { ...n.attrs } }));
  const weights = new Map<string, tf.Tensor>();
  const soleReader = (value: string): number | undefined => {
    const list = readers.get(value) ?? [];
    return list.length === 1 && !outputs.has(value) ? list[0] : undefined;
  };
  try {
    graph.nodes.forEach((node, i) => {
      const layer = byName.get(node.name)!;
      if (!FOLDABLE.has(node.op) || layer.attrs.activation !== 'linear') return;
      const bnIndex = soleReader(node.outputs[0]!);
      const bn = bnIndex === undefined ? undefined : byName.get(graph.nodes[bnIndex]!.name);
      if (bn === undefined || bn.def.type !== 'core.BatchNorm') return;
      const rank = bn.inputs[0]!.shape.length;
      const axis =
        (bn.attrs.axis as number) < 0 ? (bn.attrs.axis as number) + rank : (bn.attrs.axis as number);
      if (axis !== rank - 1) return;
      const local = (c: typeof bn, name: string, kind: 'params' | 'state') =>
        c[kind].find((t) => t.local === name && t.variant === undefined)?.info.name;
      const tensor = (name: string | undefined) =>
        name === undefined ? undefined : contextWeight(context, name, PASS);
      const kernelName = local(
        layer,
        node.op === 'core.DepthwiseConv2D' ? 'depthwiseKernel' : 'kernel',
        'params',
      )!;
      const biasName = `${node.name}/bias`;
      const kernel = tensor(kernelName)!;
      const bias = layer.attrs.useBias ? tensor(local(layer, 'bias', 'params')) : undefined;
      const gamma = tensor(local(bn, 'gamma', 'params'));
      const beta = tensor(local(bn, 'beta', 'params'));
      const mean = tensor(local(bn, 'movingMean', 'state'))!;
      const variance = tensor(local(bn, 'movingVariance', 'state'))!;
      const [newKernel, newBias] = tf.tidy(() => {
        let scale = tf.rsqrt(tf.add(variance, bn.attrs.epsilon as number));
        if (gamma !== undefined) scale = tf.mul(scale, gamma);
        let shift = tf.neg(tf.mul(mean, scale));
        if (beta !== undefined) shift = tf.add(shift, beta);
        // The kernel's last axis (a depthwise kernel's last two) holds the output channels.
        const outShape = node.op === 'core.DepthwiseConv2D' ? kernel.shape.slice(-2) : kernel.shape.slice(-1);
        const k = tf.mul(kernel, tf.reshape(scale, outShape));
        const b = bias === undefined ? shift : tf.add(tf.mul(bias, scale), shift);
        return [k, b];
      });
      weights.set(kernelName, newKernel);
      weights.set(biasName, newBias);
      const folded: GraphNode = { ...nodes[i]!, outputs: [...graph.nodes[bnIndex!]!.outputs] };
      folded.attrs = { ...folded.attrs, useBias: true };
      nodes[bnIndex!] = undefined;
      const actIndex = foldActivations ? soleReader(folded.outputs[0]!) : undefined;
      const act = actIndex === undefined ? undefined : byName.get(graph.nodes[actIndex]!.name);
      if (
        act !== undefined &&
        act.def.type === 'core.Activation' &&
        act.attrs.alpha === null &&
        act.attrs.fn !== 'softmax'
      ) {
        folded.attrs = { ...folded.attrs, activation: act.attrs.fn } as Attrs;
        folded.outputs = [...graph.nodes[actIndex!]!.outputs];
        nodes[actIndex!] = undefined;
      }
      nodes[i] = folded;
    });
    const rewritten: Graph = { ...graph, nodes: nodes.filter((n) => n !== undefined), params: [], state: [] };
    const tensors = requiredTensors(compileGraph(runtime, rewritten));
    return { graph: { ...rewritten, ...tensors }, weights };
  } catch (error) {
    tf.dispose([...weights.values()]);
    throw error;
  }
}

/** The pass `core.fold-batch-norm` ({@link foldBatchNorm}). */
export const foldBatchNormPass = definePass<FoldBatchNormOptions>({
  name: PASS,
  description:
    'Folds inference-mode batch norms (and the activation after them) into the convolution or dense layer before them.',
  run: foldBatchNorm,
});
