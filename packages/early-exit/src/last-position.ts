import {
  DynnError,
  definePass,
  type Graph,
  type GraphNode,
  inferShapes,
  type PassContext,
  validateGraph,
} from '@dynn/core';
import { EXIT_OP } from './exit.js';
import { describeExits } from './exits.js';
import { requireExitOp } from './insert-exits.js';

/** The op that takes the last position of the sequence the output head reads. */
const TIME_STEP_OP = 'core.TimeStep';

function invalid(message: string): DynnError {
  return new DynnError('INVALID_GRAPH', `early-exit.last-position: ${message}`);
}

/** A name not in `taken` (`base`, else `base_1`, `base_2`...). */
function fresh(base: string, taken: ReadonlySet<string>): string {
  let name = base;
  for (let n = 1; taken.has(name); n++) name = `${base}_${n}`;
  return name;
}

/**
 * The pass `early-exit.last-position`: the serving graph of a sequence model trained with exits
 * on every position.
 * Training supervises every position: the output is `[batch, time, classes]` and exits have
 * `positions: 'all'`. Serving predicts one next token per row, a row being one context window:
 * every exit gets `positions: 'last'` (logits `[batch, classes]` from the last position, so a row
 * it is sure about leaves and skips every later layer), and the output head, a `core.Dense`,
 * reads the last position through a new `core.TimeStep` node (named `<head>/last`). No parameter
 * is added, renamed or reshaped: the trained weights serve unchanged (see `lastPositionModel`).
 * It takes no option; `context.runtime` must provide the exit op.
 *
 * @example
 * ```ts
 * const { graph } = runPass(runtime, 'early-exit.insert-exits', lm, {
 *   at: ['block1', 'block2'],
 *   head: 'shared',
 *   sharedHead: 'head',
 * });
 * // ... train on every position with multiExitObjective ...
 * const serving = runPass(runtime, 'early-exit.last-position', graph, {}).graph;
 * ```
 */
export function lastPositionExits(
  graph: Graph,
  _options: Record<string, never>,
  context: PassContext,
): Graph {
  const { runtime } = context;
  requireExitOp(runtime, 'early-exit.last-position');
  const exits = describeExits(graph);
  if (exits.length === 0) {
    throw invalid("the graph has no exits; insert them with the 'early-exit.insert-exits' pass first.");
  }
  const output = exits[0]!.output;
  const outputInfo = graph.outputs.find((o) => o.name === output);
  if (outputInfo === undefined || outputInfo.shape.length !== 3) {
    throw invalid(
      `the exits answer for '${output}', which is not a per-position output [batch, time, classes]${outputInfo ? ` but [${outputInfo.shape.join(', ')}]` : ''}; only a graph trained on every position needs this.`,
    );
  }
  const head = graph.nodes.find((node) => node.outputs.includes(output))!;
  if (head.op !== 'core.Dense') {
    throw invalid(
      `output '${output}' comes from node '${head.name}' (${head.op}); the head must be a core.Dense, which computes each position alike, so it can read the last position alone.`,
    );
  }
  const valueNames = new Set([...graph.inputs.map((v) => v.name), ...graph.nodes.flatMap((n) => n.outputs)]);
  const last = fresh(`${head.inputs[0]!}/last`, valueNames);
  const timeStep: GraphNode = {
    name: fresh(`${head.name}/last`, new Set(graph.nodes.map((n) => n.name))),
    op: TIME_STEP_OP,
    inputs: [head.inputs[0]!],
    outputs: [last],
    attrs: { index: -1 },
  };
  const nodes = graph.nodes.flatMap((node): GraphNode[] => {
    const copy = { ...node, inputs: [...node.inputs], outputs: [...node.outputs] };
    if (node.op === EXIT_OP) return [{ ...copy, attrs: { ...node.attrs, positions: 'last' } }];
    if (node === head) return [timeStep, { ...copy, inputs: [last, ...node.inputs.slice(1)] }];
    return [copy];
  });
  const rewired: Graph = {
    ...graph,
    inputs: graph.inputs.map((v) => ({ ...v, shape: [...v.shape] })),
    nodes,
    params: graph.params.map((t) => ({ ...t })),
    state: graph.state.map((t) => ({ ...t })),
  };
  // Outputs now hold one entry per row: read their shapes off the rewired graph.
  const values = inferShapes(runtime, rewired);
  const result: Graph = {
    ...rewired,
    outputs: graph.outputs.map((o) => ({ ...o, shape: [...values.get(o.name)!.shape] })),
  };
  validateGraph(runtime, result);
  return result;
}

/** The pass `early-exit.last-position` ({@link lastPositionExits}), provided by `earlyExit()`. */
export const lastPositionPass = definePass<Record<string, never>>({
  name: 'early-exit.last-position',
  description:
    'Serves a sequence model trained with exits on every position: exits and output head read the last position.',
  run: lastPositionExits,
});
