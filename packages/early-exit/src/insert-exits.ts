import {
  type Attrs,
  addTensor,
  BATCH,
  type Dim,
  DynnError,
  definePass,
  type Graph,
  type GraphNode,
  inferShapes,
  nodeTensorSpecs,
  type PassContext,
  type Runtime,
  type TensorInfo,
  type ValueInfo,
  validateGraph,
} from '@dynn/core';
import { EARLY_EXIT_PLUGIN, EXIT_OP, type ExitAttrs, type ExitOutputActivation } from './exit.js';
import {
  EXIT_HEADS,
  EXIT_POOLINGS,
  type ExitHeadKind,
  type ExitPooling,
  type ExitPositions,
  exitFeatures,
  exitRowsShape,
} from './exit-head.js';

/** Options of the `early-exit.insert-exits` pass. Give `at` or `every`. */
export interface InsertExitsOptions {
  /** Nodes after which an exit goes (each must have one output: features or an NHWC image). */
  at?: readonly string[];
  /**
   * An exit after every k-th counted node (see `ops`), placed at the last point before the next
   * counted node where the graph is a chain (after a residual block's merge, not inside it).
   */
  every?: number;
  /** Op types `every` counts (default: nodes with parameters, except normalisations). */
  ops?: readonly string[];
  /** Classes of the exits (default: the last axis of `output`, which it must equal). */
  classes?: number;
  /** Head of every exit (default `linear`). */
  head?: ExitHeadKind;
  /** Hidden units of `mlp` heads (default 64). */
  hidden?: number;
  /** Filters of `conv` heads (default 16). */
  convFilters?: number;
  /**
   * How heads read NHWC images (default `mean`): `mean` pools every position away (cheap),
   * `flatten` keeps them (BranchyNet-style exits: a larger first layer, surer early exits).
   */
  pool?: ExitPooling;
  /**
   * Tensor group of `shared` heads (default `head`): `<sharedHead>/kernel`, `<sharedHead>/bias`.
   * Name the network's output `core.Dense` node here and every exit shares its tensors: one
   * output head for all exits (Sorted LLaMA, LayerSkip).
   */
  sharedHead?: string;
  /**
   * A `core.LayerNorm` node (default attributes) whose `gamma` and `beta` `shared` heads apply
   * before the head, as the network's final norm does before its output head (LayerSkip shares
   * both). Only with `head: 'shared'`.
   */
  sharedNorm?: string;
  /** Adds a learned halting head to every exit (default false). */
  halting?: boolean;
  /** The graph output the exits answer for (default: the graph's first output). */
  output?: string;
}

function invalid(message: string): DynnError {
  return new DynnError('INVALID_OPTION', `early-exit.insert-exits: ${message}`);
}

/** A name not in `taken` (`base`, else `base_1`, `base_2`...), which is then taken. */
function fresh(base: string, taken: Set<string>): string {
  let name = base;
  for (let n = 1; taken.has(name); n++) name = `${base}_${n}`;
  taken.add(name);
  return name;
}

/** What a graph output holds, judged from the node producing it: probabilities after a softmax. */
function activationOf(producer: GraphNode | undefined): ExitOutputActivation {
  if (producer === undefined) return 'linear';
  const { op, attrs } = producer;
  const softmax =
    (op === 'core.Dense' && attrs.activation === 'softmax') ||
    (op === 'core.Activation' && attrs.fn === 'softmax' && (attrs.axis ?? -1) === -1);
  return softmax ? 'softmax' : 'linear';
}

/**
 * Features an exit with `head` can read: batch-major, as {@link exitFeatures} accepts them; for a
 * per-position output `[batch, time, classes]`, a sequence of that length.
 */
function exitable(
  info: ValueInfo | undefined,
  head: ExitHeadKind,
  pool: ExitPooling,
  output: ValueInfo,
): boolean {
  if (info === undefined || info.shape[0] !== BATCH) return false;
  try {
    const { layout } = exitFeatures(info, head, pool);
    return output.shape.length === 2 || (layout === 'sequence' && info.shape[1] === output.shape[1]);
  } catch {
    return false;
  }
}

/** What features an exit reads, for an error message. */
function readable(head: ExitHeadKind, output: ValueInfo): string {
  if (output.shape.length === 3) return `a float32 sequence [batch, ${output.shape[1]}, d]`;
  return head === 'conv'
    ? 'a float32 [batch, h, w, c]'
    : 'float32 [batch, d], [batch, time, d] or [batch, h, w, c]';
}

/** Indices of the nodes the value `output` depends on. */
function ancestorsOf(graph: Graph, output: string): Set<number> {
  const needed = new Set([output]);
  const ancestors = new Set<number>();
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]!;
    if (!node.outputs.some((o) => needed.has(o))) continue;
    ancestors.add(i);
    for (const input of node.inputs) needed.add(input);
  }
  return ancestors;
}

/**
 * Positions after which the graph is a chain: the node's output is the only value produced so far
 * that a later node still reads (so an exit there sees everything the rest of the graph needs).
 */
function chainPoints(graph: Graph): Set<number> {
  const lastRead = new Map<string, number>();
  graph.nodes.forEach((node, i) => {
    for (const input of node.inputs) lastRead.set(input, i);
  });
  const points = new Set<number>();
  const live = new Set<string>(graph.inputs.map((v) => v.name).filter((name) => lastRead.has(name)));
  graph.nodes.forEach((node, i) => {
    for (const name of [...live]) if (lastRead.get(name)! <= i) live.delete(name);
    for (const output of node.outputs) if ((lastRead.get(output) ?? -1) > i) live.add(output);
    if (node.outputs.length === 1 && [...live].every((name) => name === node.outputs[0])) points.add(i);
  });
  return points;
}

/** Positions of the nodes after which exits go, ascending. */
function attachPoints(
  graph: Graph,
  runtime: Runtime,
  values: Map<string, ValueInfo>,
  options: InsertExitsOptions,
  outputInfo: ValueInfo,
): number[] {
  const head = options.head ?? 'linear';
  const pool = options.pool ?? 'mean';
  const output = outputInfo.name;
  const ancestors = ancestorsOf(graph, output);
  const producer = graph.nodes.findIndex((node) => node.outputs.includes(output));
  if (options.at !== undefined) {
    const positions = options.at.map((name) => {
      const i = graph.nodes.findIndex((node) => node.name === name);
      const node = graph.nodes[i];
      if (node === undefined) throw invalid(`no node named '${name}' (in option 'at').`);
      if (node.outputs.length !== 1)
        throw invalid(`node '${name}' has ${node.outputs.length} outputs; an exit needs one.`);
      const info = values.get(node.outputs[0]!);
      if (!exitable(info, head, pool, outputInfo)) {
        throw invalid(
          `node '${name}' outputs ${info?.dtype}[${info?.shape.join(', ')}]; ${head === 'conv' ? "head 'conv'" : 'an exit'} answering for '${output}' reads ${readable(head, outputInfo)}.`,
        );
      }
      if (!ancestors.has(i) || i === producer) {
        throw invalid(
          `node '${name}' is not before output '${output}'; put exits on the path that computes it.`,
        );
      }
      return i;
    });
    return [...new Set(positions)].sort((a, b) => a - b);
  }
  const every = options.every!;
  const counted: number[] = [];
  graph.nodes.forEach((node, i) => {
    if (!ancestors.has(i)) return;
    const counts =
      options.ops !== undefined
        ? options.ops.includes(node.op)
        : !/Norm$/.test(node.op) &&
          nodeTensorSpecs(
            runtime,
            node,
            node.inputs.map((name) => values.get(name)!),
          ).params.length > 0;
    if (counts) counted.push(i);
  });
  // Counting parametrised nodes, the last one is the classifier: no exit after it.
  const limit = options.ops === undefined ? (counted.at(-1) ?? producer) : producer;
  const candidates = [...chainPoints(graph)]
    .filter(
      (i) =>
        i < limit &&
        ancestors.has(i) &&
        exitable(values.get(graph.nodes[i]!.outputs[0]!), head, pool, outputInfo),
    )
    .sort((a, b) => a - b);
  const chosen = new Set<number>();
  for (let j = every; j <= counted.length; j += every) {
    const start = counted[j - 1]!;
    const end = counted[j] ?? limit;
    const inside = candidates.filter((i) => i >= start && i < end);
    const point = inside.at(-1) ?? candidates.find((i) => i >= end);
    if (point !== undefined) chosen.add(point);
  }
  return [...chosen].sort((a, b) => a - b);
}

/**
 * @internal Throws `UNKNOWN_OP` unless `runtime` provides the exit op (the early-exit plugin):
 * `what` names the function or pass that needs it.
 */
export function requireExitOp(runtime: Runtime, what: string): void {
  if (runtime.hasOp(EXIT_OP)) return;
  throw new DynnError(
    'UNKNOWN_OP',
    `${what} needs the op '${EXIT_OP}', which the runtime lacks: create the runtime with createRuntime({ plugins: [earlyExit()] }) (earlyExit from @dynn/early-exit).`,
    { op: EXIT_OP },
  );
}

/**
 * The pass `early-exit.insert-exits`: inserts exits into a graph (the input graph is not changed).
 * Each chosen node
 * gets a new output name and the exit takes over the old one as its pass-through output, so no
 * reader needs rewiring and, with criterion `none`, every output equals the original's exactly.
 * Successive exits chain their patience state; each exit's logits become a graph output `exit<k>`
 * (and, with `halting`, its halting probability `halt<k>`), after the original outputs.
 *
 * The output the exits answer for is `[batch, classes]`, or `[batch, time, classes]` for a
 * sequence model trained on every position (exits then read `[batch, time, d]` features of the
 * same length, with `positions: 'all'`; the pass `early-exit.last-position` turns such a graph into
 * the one that serves, one prediction per row). Exits reading a sequence for a `[batch, classes]`
 * output answer from its last position (`positions: 'last'`).
 *
 * `context.runtime` compiles the graph and must provide the exit op (create it with
 * `createRuntime({ plugins: [earlyExit()] })`); the pass makes no weight: the new exit heads are
 * initialised from their specs (see `applyPass`, or `addExits` for a model).
 *
 * @example
 * ```ts
 * const runtime = createRuntime({ plugins: [earlyExit()] });
 * const { graph } = runPass(runtime, 'early-exit.insert-exits', backbone, { every: 2, head: 'mlp' });
 * const model = createModel(runtime, graph);
 * ```
 */
export function insertExits(graph: Graph, options: InsertExitsOptions, context: PassContext): Graph {
  const { runtime } = context;
  requireExitOp(runtime, 'early-exit.insert-exits');
  if ((options.at === undefined) === (options.every === undefined)) {
    throw invalid("give exactly one of 'at' (node names) and 'every' (a count).");
  }
  if (options.every !== undefined && !(Number.isInteger(options.every) && options.every >= 1)) {
    throw invalid(`'every' must be an integer >= 1, got ${options.every}.`);
  }
  if (options.head !== undefined && !EXIT_HEADS.includes(options.head)) {
    throw invalid(`'head' is ${JSON.stringify(options.head)}; expected one of ${EXIT_HEADS.join(', ')}.`);
  }
  if (options.pool !== undefined && !EXIT_POOLINGS.includes(options.pool)) {
    throw invalid(`'pool' is ${JSON.stringify(options.pool)}; expected one of ${EXIT_POOLINGS.join(', ')}.`);
  }
  if (graph.nodes.some((node) => node.op === EXIT_OP)) {
    throw invalid('the graph already has exits; insert them into the graph without exits.');
  }
  const values = inferShapes(runtime, graph);
  const output = options.output ?? graph.outputs[0]!.name;
  const outputInfo = graph.outputs.find((o) => o.name === output);
  if (outputInfo === undefined) {
    throw invalid(`no graph output '${output}'. Outputs: ${graph.outputs.map((o) => o.name).join(', ')}.`);
  }
  const classes = outputInfo.shape.at(-1);
  if ((outputInfo.shape.length !== 2 && outputInfo.shape.length !== 3) || typeof classes !== 'number') {
    throw invalid(
      `exits answer for a [batch, classes] or a per-position [batch, time, classes] output; '${output}' is [${outputInfo.shape.join(', ')}].`,
    );
  }
  if (options.classes !== undefined && options.classes !== classes) {
    throw invalid(`'classes' is ${options.classes} but output '${output}' has ${classes}.`);
  }
  if (options.sharedNorm !== undefined && options.head !== 'shared') {
    throw invalid(`'sharedNorm' normalises the features of shared heads; give head: 'shared'.`);
  }
  const points = attachPoints(graph, runtime, values, options, outputInfo);
  if (points.length === 0)
    throw invalid(`no place for an exit before '${output}' with every=${options.every}.`);

  const nodeNames = new Set(graph.nodes.map((n) => n.name));
  const valueNames = new Set(values.keys());
  const exits = points.map((position, index) => {
    const node = fresh(`exit${index}`, nodeNames);
    return {
      position,
      index,
      node,
      logits: fresh(`exit${index}`, valueNames),
      state: fresh(`${node}/state`, valueNames),
      halt: fresh(`halt${index}`, valueNames),
      features: fresh(`${graph.nodes[position]!.outputs[0]!}/features`, valueNames),
    };
  });
  const producer = graph.nodes.find((node) => node.outputs.includes(output));
  const nodes: GraphNode[] = [];
  const params: TensorInfo[] = graph.params.map((t) => ({ ...t }));
  const outputs: ValueInfo[] = graph.outputs.map((o) => ({ ...o, shape: [...o.shape] }));
  // The leading axes of each exit's outputs: [batch], or [batch, time] for every position.
  const rows = new Map<number, Dim[]>();
  let next = 0;
  graph.nodes.forEach((node, position) => {
    const exit = exits[next];
    if (exit?.position !== position) {
      nodes.push({ ...node, inputs: [...node.inputs], outputs: [...node.outputs] });
      return;
    }
    next++;
    const passThrough = node.outputs[0]!;
    const later = exits.slice(exit.index);
    const features = { ...values.get(passThrough)!, name: exit.features };
    // A per-position output is trained with logits for every position; a [batch, classes] output
    // read from a sequence answers from its last position.
    const positions: ExitPositions =
      outputInfo.shape.length === 2 && features.shape.length === 3 ? 'last' : 'all';
    // Rows leaving here give their logits to this and every later exit's output, which they
    // never reach; the executor keeps the earlier exits' outputs it computed for them.
    const attrs: Omit<ExitAttrs, 'classes' | 'outputActivation' | 'carried'> & Attrs = {
      head: options.head ?? 'linear',
      hidden: options.hidden ?? 64,
      convFilters: options.convFilters ?? 16,
      pool: options.pool ?? 'mean',
      sharedHead: options.sharedHead ?? 'head',
      sharedNorm: options.sharedNorm ?? '',
      positions,
      output,
      exitOutputs: later.map((e) => e.logits),
      haltOutputs: options.halting ? later.map((e) => e.halt) : [],
      index: exit.index,
      halting: options.halting ?? false,
    };
    const exitNode: GraphNode = {
      name: exit.node,
      op: EXIT_OP,
      inputs: exit.index === 0 ? [exit.features] : [exit.features, exits[exit.index - 1]!.state],
      outputs: [passThrough, exit.logits, exit.state, exit.halt],
      attrs: { ...attrs, classes, outputActivation: activationOf(producer) },
    };
    nodes.push({ ...node, inputs: [...node.inputs], outputs: [exit.features] });
    nodes.push(exitNode);

    // Parameters depend on the features only.
    for (const t of nodeTensorSpecs(runtime, exitNode, [features]).params) addTensor(params, t.info);
    rows.set(exit.index, exitRowsShape(features.shape, positions));
    outputs.push({ name: exit.logits, dtype: 'float32', shape: [...rows.get(exit.index)!, classes] });
  });
  if (options.halting) {
    for (const exit of exits)
      outputs.push({ name: exit.halt, dtype: 'float32', shape: [...rows.get(exit.index)!, 1] });
  }
  const result: Graph = {
    ...graph,
    opsets: { ...graph.opsets, [EARLY_EXIT_PLUGIN.domain]: EARLY_EXIT_PLUGIN.opset },
    inputs: graph.inputs.map((v) => ({ ...v, shape: [...v.shape] })),
    outputs,
    nodes,
    params,
    state: graph.state.map((t) => ({ ...t })),
  };
  validateGraph(runtime, result);
  return result;
}

/**
 * The pass `early-exit.insert-exits` ({@link insertExits}), provided by `earlyExit()`.
 *
 * @example
 * ```ts
 * const { graph } = runPass(runtime, 'early-exit.insert-exits', backbone, { every: 2, head: 'mlp' });
 * ```
 */
export const insertExitsPass = definePass<InsertExitsOptions>({
  name: 'early-exit.insert-exits',
  description: 'Inserts early exits after named nodes or after every k-th layer.',
  run: insertExits,
});
