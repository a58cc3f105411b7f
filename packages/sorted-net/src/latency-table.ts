import {
  type CompiledNode,
  createOpContext,
  DynnError,
  type Graph,
  type Model,
  type NodeHook,
  type OpResult,
  type RunOptions,
  type TensorOrMap,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { describeNesting, type Nesting } from './describe-nesting.js';
import { NESTED_OP, type NestedAttrs } from './nested-op.js';
import {
  activeChannels,
  depthOf,
  kernelOf,
  readSubNetwork,
  type SubNetwork,
  subNetworkOptions,
  widthOf,
} from './options.js';
import { RESIDUAL_OP, type ResidualAttrs } from './residual-op.js';

/** One measured configuration of a node. */
export interface LatencyEntry {
  /** Channels kept per knob the node depends on (every name of its `knobs`). */
  channels: Record<string, number>;
  /** The kernel size it ran at, for an elastic convolution; absent for other nodes. */
  kernel?: number;
  /** Median time of one call, in milliseconds. */
  ms: number;
}

/** The measured configurations of one node. */
export interface LatencyNode {
  /** The node's name. */
  node: string;
  /** Its op type (`sorted-net.Nested` for a nested layer). */
  op: string;
  /** The width knobs whose choice changes its work (the channel counts of its inputs, outputs and weights); empty for a node of fixed cost. */
  knobs: string[];
  /** One entry per distinct configuration measured. */
  entries: LatencyEntry[];
}

/**
 * Per-node latencies of a nested model on one backend, measured once by
 * {@link measureLatencyTable} and read by {@link predictLatency}: plain JSON, to save next to the
 * model (a table holds for the backend and device it was measured on).
 */
export interface LatencyTable {
  /** Marks the JSON as a latency table. */
  format: 'dynn-latency-table';
  /** Format version. */
  version: 1;
  /** The tfjs backend it was measured on. */
  backend: string;
  /** Shape of each input of the sample batch, by input name (times are for this batch size). */
  inputShapes: Record<string, number[]>;
  /** Untimed calls before each node's timed ones. */
  warmup: number;
  /** Timed calls per node and configuration (the median is kept). */
  repeats: number;
  /** Every top-level node of the model, in graph order. */
  nodes: LatencyNode[];
}

/** Options of {@link measureLatencyTable}. */
export interface LatencyTableOptions {
  /** A sample batch (a tensor, or tensors by input name), typically one row: the deployment batch size. */
  input: TensorOrMap;
  /** Width fractions to measure, each applied to every knob. */
  widths: readonly number[];
  /** Kernel sizes of elastic convolutions to measure (default: the largest only). */
  kernels?: readonly number[];
  /** Untimed calls per node and configuration before timing (default 2). */
  warmup?: number;
  /** Timed calls per node and configuration; the median is kept (default 5). */
  repeats?: number;
}

const FORMAT = 'dynn-latency-table';

function invalid(message: string): DynnError {
  return new DynnError('INVALID_OPTION', message);
}

/** Checks a list of width fractions: at least one, each in (0, 1]. */
export function checkWidths(widths: readonly number[] | undefined, what: string): number[] {
  if (!Array.isArray(widths) || widths.length === 0) {
    throw invalid(`${what}: 'widths' must list at least one width fraction in (0, 1], e.g. [0.25, 0.5, 1].`);
  }
  for (const w of widths) {
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0 || w > 1)
      throw invalid(`${what}: every width must be a fraction in (0, 1], got ${JSON.stringify(w)}.`);
  }
  return [...new Set(widths)].sort((a, b) => a - b);
}

function checkCount(value: number | undefined, fallback: number, min: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min)
    throw invalid(`measureLatencyTable: '${name}' must be an integer >= ${min}, got ${JSON.stringify(v)}.`);
  return v;
}

/** The kernel sizes to measure: each must be one every elastic layer takes. */
function checkKernels(kernels: readonly number[] | undefined, nesting: Nesting): (number | undefined)[] {
  if (kernels === undefined || nesting.kernels.length === 0) return [undefined];
  if (kernels.length === 0) throw invalid("measureLatencyTable: 'kernels', when given, must list a size.");
  for (const k of kernels) {
    const refusing = nesting.kernels.find((layer) => !layer.sizes.includes(k));
    if (refusing !== undefined) {
      throw invalid(
        `measureLatencyTable: kernel ${JSON.stringify(k)} is not one elastic layer '${refusing.node}' takes (${refusing.sizes.join(', ')}).`,
      );
    }
  }
  return [...new Set(kernels)].sort((a, b) => a - b);
}

/** What the cost of a node depends on, read from the graph. */
interface NodeShape {
  knobs: string[];
  /** The elastic kernel's key and sizes, or undefined. */
  elastic?: { key: string; sizes: number[] };
}

/** The knobs each node depends on: the knob-sized dimensions of its values and its nested spaces. */
function nodeShapes(model: Model, nesting: Nesting): Map<string, NodeShape> {
  const order = nesting.knobs.map((k) => k.name);
  const known = new Set(order);
  const shapes = new Map<string, NodeShape>();
  for (const c of model.compiled.nodes) {
    const used = new Set<string>();
    for (const v of [...c.inputs, ...c.outputs])
      for (const d of v.shape) if (typeof d === 'string' && known.has(d)) used.add(d);
    let elastic: NodeShape['elastic'];
    if (c.node.op === NESTED_OP) {
      const attrs = c.node.attrs as NestedAttrs;
      for (const s of Object.values(attrs.spaces)) used.add(s.knob);
      if (attrs.kernel !== null && attrs.kernel !== undefined)
        elastic = { key: attrs.kernel.key, sizes: [...attrs.kernel.sizes] };
    }
    shapes.set(c.node.name, {
      knobs: order.filter((k) => used.has(k)),
      ...(elastic === undefined ? {} : { elastic }),
    });
  }
  return shapes;
}

/** Channels per knob and kernel size a node runs with under `sub`. */
function configuration(
  shape: NodeShape,
  sub: SubNetwork,
  knobs: ReadonlyMap<string, { size: number; multiple: number }>,
): { channels: Record<string, number>; kernel?: number } {
  const channels: Record<string, number> = {};
  for (const name of shape.knobs) {
    const knob = knobs.get(name);
    if (knob === undefined) throw invalid(`The latency table names knob '${name}', which the graph lacks.`);
    channels[name] = activeChannels(knob.size, widthOf(sub, name), knob.multiple);
  }
  if (shape.elastic === undefined) return { channels };
  return { channels, kernel: kernelOf(sub, shape.elastic.key) ?? shape.elastic.sizes.at(-1)! };
}

const configKey = (node: string, config: { channels: Record<string, number>; kernel?: number }) =>
  `${node}|${JSON.stringify(config.channels)}|${config.kernel ?? ''}`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The node's default parameter and state tensors by local name, as the interpreter gives them. */
function nodeTensors(model: Model, c: CompiledNode) {
  const pick = (list: CompiledNode['params'], store: ReadonlyMap<string, tf.Tensor>) =>
    Object.fromEntries(
      list.filter((t) => t.variant === undefined).map((t) => [t.local, store.get(t.info.name)!]),
    );
  return { params: pick(c.params, model.params), state: pick(c.state, model.state) };
}

/**
 * One call of a node alone, timed from its decide step to its outputs read back (awaiting
 * `data()` waits for a GPU backend to finish the work). Frees what the call made.
 */
async function timeCall(
  c: CompiledNode,
  inputs: tf.Tensor[],
  options: RunOptions,
  tensors: ReturnType<typeof nodeTensors>,
  derived: Model['derived'],
): Promise<number> {
  const { params, state } = tensors;
  const rows = inputs[0]?.shape[0] ?? 1;
  const keep = new Set<tf.Tensor>([...inputs, ...Object.values(params), ...Object.values(state)]);
  const { context, effects } = createOpContext({
    node: c.node,
    attrs: c.attrs,
    params,
    state,
    training: false,
    options,
    rows: { batchSize: rows, indices: Int32Array.from({ length: rows }, (_, i) => i) },
    seed: 0,
    // As in a model's runs: weights a node derives (narrowed to the sub-network) are made once.
    derived,
  });
  let made: tf.Tensor[] = [];
  const start = performance.now();
  try {
    if (c.def.decide !== undefined)
      (context as { decision: unknown }).decision = await c.def.decide(context, inputs);
    const result = c.def.forward(context, inputs) as tf.Tensor[] | OpResult;
    made = Array.isArray(result)
      ? result
      : [...result.outputs, ...Object.values(result.retire?.outputs ?? {})];
    await Promise.all(made.map((t) => t.data()));
    return performance.now() - start;
  } finally {
    tf.dispose(made.filter((t) => !keep.has(t)));
    tf.dispose([
      ...effects.transient,
      ...effects.losses.map((l) => l.value),
      ...effects.stateUpdates.values(),
    ]);
    for (const v of effects.sessionWrites.values()) if (typeof v !== 'number') v.dispose();
  }
}

/** A node in one configuration, with the inputs it met there and its times so far. */
interface Measurement {
  c: CompiledNode;
  inputs: tf.Tensor[];
  options: RunOptions;
  tensors: ReturnType<typeof nodeTensors>;
  entry: Omit<LatencyEntry, 'ms'>;
  times: number[];
}

/** The sample batch by input name, checked against the graph's inputs. */
function namedInputs(model: Model, input: TensorOrMap): Record<string, tf.Tensor> {
  if (input instanceof tf.Tensor) {
    if (model.graph.inputs.length !== 1) {
      throw invalid(
        `measureLatencyTable: the graph has ${model.graph.inputs.length} inputs; give 'input' as tensors by name.`,
      );
    }
    return { [model.graph.inputs[0]!.name]: input };
  }
  if (input === undefined || input === null || typeof input !== 'object')
    throw invalid(
      "measureLatencyTable: 'input' must be a sample batch (a tensor, or tensors by input name).",
    );
  return input;
}

/**
 * Measures how long each node of a nested model takes on the current tfjs backend, once per
 * width in `widths` (applied to every knob) and kernel size in `kernels`, so that
 * {@link predictLatency} can cost thousands of sub-networks without running them (once-for-all's
 * latency lookup table).
 *
 * Method: for each configuration the model runs once on `input` with a hook that copies each
 * top-level node's inputs the first time the node meets a configuration (its channel counts per
 * knob and its kernel size). Each such node is then called alone on those inputs, as the
 * interpreter calls it (its decide step, its forward on the narrowed weights), each call timed
 * until its outputs are read back (`await data()`, which waits for a GPU backend's queue): in
 * `warmup` untimed and then `repeats` timed rounds over every node and configuration, keeping
 * the median per entry. The copied inputs (one set of activations per configuration) are held
 * until the end: use a small batch.
 *
 * Limits: a node's time leaves out the interpreter's own work between nodes (feed checks, row
 * bookkeeping), about a constant per run. It includes what a nested layer does on every call
 * (cutting its weights to the kept channels), which is real: on tfjs's cpu backend that cut can
 * cost more than the narrower compute saves. On GPU backends each time includes one readback of
 * the node's outputs and a dispatch that a whole run would overlap, so there predictions rank
 * sub-networks rather than give their exact time. A node that runs sub-graphs (`core.Scan`)
 * cannot be called alone, so a model with one is refused. A node after one that retires rows is
 * timed on the rows it met in the sample run.
 * Times hold for the batch size of `input` and the device measured.
 *
 * @example
 * ```ts
 * const table = await measureLatencyTable(nested, { input: tf.zeros([1, 32, 32, 3]), widths: [0.25, 0.5, 0.75, 1] });
 * const ms = predictLatency(table, nested.graph, { width: 0.5, depth: 1 });
 * ```
 */
export async function measureLatencyTable(model: Model, options: LatencyTableOptions): Promise<LatencyTable> {
  const widths = checkWidths(options?.widths, 'measureLatencyTable');
  const warmup = checkCount(options.warmup, 2, 0, 'warmup');
  const repeats = checkCount(options.repeats, 5, 1, 'repeats');
  const nesting = describeNesting(model.graph);
  const kernels = checkKernels(options.kernels, nesting);
  const feeds = namedInputs(model, options.input);
  for (const c of model.compiled.nodes) {
    if (c.subGraphs.length > 0) {
      throw invalid(
        `measureLatencyTable times each node alone, and node '${c.node.name}' (${c.node.op}) runs sub-graphs, which only a whole run can execute.`,
      );
    }
  }
  const shapes = nodeShapes(model, nesting);
  const knobs = new Map(nesting.knobs.map((k) => [k.name, k]));
  const byName = new Map(model.compiled.nodes.map((c) => [c.node.name, c]));
  const nodes = new Map<string, LatencyNode>(
    model.compiled.nodes.map((c) => [
      c.node.name,
      { node: c.node.name, op: c.node.op, knobs: shapes.get(c.node.name)!.knobs, entries: [] },
    ]),
  );
  const seen = new Set<string>();
  const captured: Measurement[] = [];
  try {
    for (const width of widths) {
      for (const kernel of kernels) {
        const sub: SubNetwork = kernel === undefined ? { width } : { width, kernel };
        const runOptions = subNetworkOptions(sub);
        const hook: NodeHook = {
          beforeNode(event) {
            if (event.parent !== undefined || event.rows === 0) return;
            const entry = configuration(shapes.get(event.node.name)!, sub, knobs);
            const key = configKey(event.node.name, entry);
            if (seen.has(key)) return;
            seen.add(key);
            const c = byName.get(event.node.name)!;
            captured.push({
              c,
              inputs: event.inputs.map((t) => tf.clone(t)),
              options: runOptions,
              tensors: nodeTensors(model, c),
              entry,
              times: [],
            });
          },
        };
        const { outputs } = await model.run(feeds, { options: runOptions, report: false, hooks: [hook] });
        tf.dispose(Object.values(outputs));
      }
    }
    // Rounds over every configuration, rather than one configuration after another, so that
    // warm-up (kernel compilation, caches) and drift weigh on every entry alike.
    for (let round = 0; round < warmup + repeats; round++) {
      for (const m of captured) {
        const ms = await timeCall(m.c, m.inputs, m.options, m.tensors, model.derived);
        if (round >= warmup) m.times.push(ms);
      }
    }
  } finally {
    for (const { inputs } of captured) tf.dispose(inputs);
  }
  for (const m of captured) nodes.get(m.c.node.name)!.entries.push({ ...m.entry, ms: median(m.times) });
  return {
    format: FORMAT,
    version: 1,
    backend: tf.getBackend(),
    inputShapes: Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, [...t.shape]])),
    warmup,
    repeats,
    nodes: [...nodes.values()],
  };
}

/**
 * The nodes a sub-network runs: those a graph output depends on, a residual block's branch left
 * out when the sub-network's depth skips it. Residual ends that skip their branch are `passes`:
 * they hand the skip input on and compute nothing.
 */
export function nodesRun(graph: Graph, sub: SubNetwork): { runs: Set<string>; passes: Set<string> } {
  const needed = new Set(graph.outputs.map((o) => o.name));
  const runs = new Set<string>();
  const passes = new Set<string>();
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]!;
    if (!node.outputs.some((o) => needed.has(o))) continue;
    runs.add(node.name);
    let inputs = node.inputs;
    if (node.op === RESIDUAL_OP) {
      const attrs = node.attrs as ResidualAttrs;
      if (depthOf(sub, attrs.stage) < attrs.block) {
        passes.add(node.name);
        inputs = inputs.slice(0, 1);
      }
    }
    for (const v of inputs) needed.add(v);
  }
  return { runs, passes };
}

/** Product of the kept fractions of an entry's knobs: the node's work relative to full width. */
function workFraction(
  node: LatencyNode,
  channels: Readonly<Record<string, number>>,
  sizes: ReadonlyMap<string, { size: number }>,
): number {
  return node.knobs.reduce((p, k) => (p * channels[k]!) / sizes.get(k)!.size, 1);
}

/**
 * A node's time for channel counts it may not have been measured at: the exact entry when there
 * is one; otherwise linear in its work fraction between the two nearest entries, and
 * proportional to it beyond the measured range (work of a layer scales with the product of the
 * channel counts it touches).
 */
function nodeMs(
  node: LatencyNode,
  config: { channels: Record<string, number>; kernel?: number },
  sizes: ReadonlyMap<string, { size: number }>,
): number {
  const entries = node.entries.filter((e) => e.kernel === config.kernel);
  if (entries.length === 0) {
    const measured = [...new Set(node.entries.map((e) => e.kernel))].join(', ') || 'none';
    throw invalid(
      `The latency table has no entry for node '${node.node}' at kernel ${config.kernel ?? 'default'} (measured: ${measured}); measure the kernels the search uses.`,
    );
  }
  const exact = entries.find((e) => node.knobs.every((k) => e.channels[k] === config.channels[k]));
  if (exact !== undefined) return exact.ms;
  const s = workFraction(node, config.channels, sizes);
  const points = entries
    .map((e) => ({ s: workFraction(node, e.channels, sizes), ms: e.ms }))
    .sort((a, b) => a.s - b.s);
  const first = points[0]!;
  const last = points.at(-1)!;
  if (s <= first.s) return (first.ms * s) / first.s;
  if (s >= last.s) return (last.ms * s) / last.s;
  const upper = points.findIndex((p) => p.s >= s);
  const a = points[upper - 1]!;
  const b = points[upper]!;
  return b.s === a.s ? a.ms : a.ms + ((b.ms - a.ms) * (s - a.s)) / (b.s - a.s);
}

/**
 * The latency a sub-network is predicted to take, in milliseconds, from a table
 * {@link measureLatencyTable} measured: the sum of the entries of the nodes it runs (a residual
 * branch its depth skips costs nothing), each at the node's channel counts and kernel size under
 * `sub`. A per-knob width no entry was measured at is interpolated in the node's work fraction
 * (the product of its knobs' kept fractions). Runs nothing: a search costs thousands of
 * sub-networks with it.
 *
 * @example
 * ```ts
 * const ms = predictLatency(table, nested.graph, { width: { 's0conv#filters': 0.5 }, depth: [1, 2] });
 * ```
 */
export function predictLatency(table: LatencyTable, graph: Graph, sub: SubNetwork): number {
  if (table?.format !== FORMAT || !Array.isArray(table.nodes)) {
    throw invalid('predictLatency: the table is not a latency table; make one with measureLatencyTable.');
  }
  readSubNetwork(subNetworkOptions(sub));
  const nesting = describeNesting(graph);
  const knobs = new Map(nesting.knobs.map((k) => [k.name, k]));
  const elastic = new Map(nesting.kernels.map((k) => [k.node, k.sizes]));
  const byName = new Map(table.nodes.map((n) => [n.node, n]));
  const { runs, passes } = nodesRun(graph, sub);
  let total = 0;
  for (const name of runs) {
    if (passes.has(name)) continue;
    const node = byName.get(name);
    if (node === undefined) {
      throw invalid(
        `predictLatency: the latency table has no node '${name}': it was measured on another graph; measure this one.`,
      );
    }
    const sizes = elastic.get(name);
    const shape: NodeShape = {
      knobs: node.knobs,
      ...(sizes === undefined ? {} : { elastic: { key: name, sizes } }),
    };
    total += nodeMs(node, configuration(shape, sub, knobs), knobs);
  }
  return total;
}

/**
 * FLOPs per sample a sub-network executes on `input`, as the compute report measures them
 * (`report.flops` divided by the rows of `input`): one run, whose outputs are freed.
 *
 * @example
 * ```ts
 * const mflops = (await subNetworkFlops(nested, { width: 0.5 }, sample)) / 1e6;
 * ```
 */
export async function subNetworkFlops(model: Model, sub: SubNetwork, input: TensorOrMap): Promise<number> {
  const { outputs, report } = await model.run(input, { options: subNetworkOptions(sub), report: true });
  tf.dispose(Object.values(outputs));
  return report!.flops / report!.batchSize;
}
