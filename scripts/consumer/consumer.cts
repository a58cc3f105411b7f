// The CommonJS side of the type check (node16 resolution): the `require` condition's .d.cts files.
import { createRuntime, type Graph, GraphBuilder, isDynnError, runPass } from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import { earlyExit, type InsertExitsOptions } from '@dynn/early-exit';
import { addMoeLayer, type MoeRunOptions, moeOptions, moeRouter } from '@dynn/moe-router';
import { nestModel, residualCnnGraph, type SubNetwork, sortedNet, subNetworkOptions } from '@dynn/sorted-net';
import { addSparseAttention, type Pattern, sparseAttention } from '@dynn/sparse-attention';

export function graphWithExit(): Graph {
  const runtime = createRuntime({ plugins: [earlyExit()] });
  const b = new GraphBuilder(runtime);
  const h = b.add(
    'core.Dense',
    b.input('pixels', 'float32', ['batch', 64]),
    { units: 8 },
    { name: 'hidden1' },
  );
  return runPass<InsertExitsOptions>(
    runtime,
    'early-exit.insert-exits',
    b.build({ logits: b.add('core.Dense', h, { units: 10 }) }),
    {
      at: ['hidden1'],
      classes: 10,
    },
  ).graph;
}

export const loaders = { loadDigits, isDynnError };

export const nesting = { nestModel, subNetworkOptions };

/** A nestable residual CNN for 8x8 images, and the run options of its half-width sub-network. */
export function nestable(): { graph: Graph; half: ReturnType<typeof subNetworkOptions> } {
  const runtime = createRuntime({ plugins: [sortedNet()] });
  const half: SubNetwork = { width: 0.5 };
  return { graph: residualCnnGraph(runtime, { size: 8 }), half: subNetworkOptions(half) };
}

/** A graph with a MoE layer of 4 experts, and the run options of a top-1 dropless call. */
export function withExperts(): { graph: Graph; top1: ReturnType<typeof moeOptions> } {
  const runtime = createRuntime({ plugins: [moeRouter()] });
  const b = new GraphBuilder(runtime);
  const y = addMoeLayer(b, runtime, b.input('x', 'float32', ['batch', 8]), {
    experts: 4,
    expert: { hidden: 8 },
  });
  const options: MoeRunOptions = { k: 1, capacityFactor: 0 };
  return { graph: b.build({ y }), top1: moeOptions(options) };
}

/** A graph with a sparse-attention layer on a causal sliding window of 16. */
export function withSparseAttention(): Graph {
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const b = new GraphBuilder(runtime);
  const pattern: Pattern = {
    type: 'and',
    of: [{ type: 'causal' }, { type: 'window', before: 15, after: 0 }],
  };
  const y = addSparseAttention(b, b.input('x', 'float32', ['batch', 'time', 16]), {
    numHeads: 2,
    keyDim: 8,
    pattern,
  });
  return b.build({ y });
}
