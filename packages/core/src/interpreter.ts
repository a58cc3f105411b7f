import * as tf from '@tensorflow/tfjs-core';
import { type CompiledGraph, type CompiledNode, findSubGraph } from './compile.js';
import type { DerivedTensors } from './derived-tensors.js';
import { DynnError } from './errors.js';
import { type Attrs, BATCH, type GraphNode, type ValueInfo } from './ir.js';
import type { FlopsContext, OpResult, RunOptions, SessionValue } from './op.js';
import { type AuxLoss, createOpContext, type OpSideEffects } from './op-context.js';
import { formatShape } from './ops/basic/shape-helpers.js';
import { takeRows } from './ops/basic/tensor-rows.js';
import { seedFor } from './random.js';
import { sessionTensors } from './session.js';

/** A node as a {@link NodeHook} sees it before it runs. */
export interface NodeEvent {
  /** Full name: the node's name at the top, `moe1/experts/3/fc1` inside sub-graphs. */
  path: string;
  /** The enclosing node's path inside a sub-graph; undefined at the top. */
  parent?: string;
  /** The node. */
  node: GraphNode;
  /** Its attributes, defaults filled in. */
  attrs: Attrs;
  /** Its inputs, on the rows it computes. */
  inputs: readonly tf.Tensor[];
  /** Rows it computes (0 for a node every row retired before). */
  rows: number;
  /** Whether ops run in training mode. */
  training: boolean;
  /** Whether the node runs under a gradient tape (a training step's taped step). */
  taped: boolean;
}

/** A node as a {@link NodeHook} sees it once it ran. */
export interface NodeDoneEvent extends NodeEvent {
  /** Its outputs (owned by the run: read them, do not dispose them). */
  outputs: readonly tf.Tensor[];
  /** Statistics it recorded (`ctx.record`). */
  records: Readonly<Record<string, unknown>>;
  /** FLOPs it executed: its op's `flops` on the actual shapes plus what it added (`ctx.addCompute`). */
  flops: number;
  /** Bytes it reported moving (`ctx.addCompute`). */
  bytes: number;
  /**
   * FLOPs had every row of the batch gone through it, every dimension at its actual size (top
   * graph only: a sub-graph op's cost counts its sub-graphs once, at the enclosing node).
   */
  fullFlops?: number;
}

/**
 * Watches nodes as a run goes: tracing, profiling, the compute report, tests. Called
 * synchronously, in inference and in training (inside the tape), for every node the run reaches,
 * sub-graph nodes included. A node every row retired before is reported to `afterNode` only,
 * with `rows: 0` and no outputs.
 */
export interface NodeHook {
  /** Before the node's decide step and forward. */
  beforeNode?(event: NodeEvent): void;
  /** After its forward, with its outputs and what it computed. */
  afterNode?(event: NodeDoneEvent): void;
}

/** Decisions made by a decide step, by node path, replayed by the taped step. */
export type Decisions = Map<string, unknown>;

/** How a run drives the interpreter: the same node loop serves inference and both training steps. */
export type RunMode =
  /** Inference: decide steps run inline (async), rows may retire. */
  | 'infer'
  /** A training step's decide step: untaped, records the decisions of ops that decide in training. */
  | 'decide'
  /** A training step's taped step: synchronous, replays recorded decisions, every row runs. */
  | 'taped';

/** What a run shares across its graph and sub-graphs. */
export interface Frame {
  /** How the interpreter is driven. */
  mode: RunMode;
  /** Whether ops run in training mode. */
  training: boolean;
  /** Run options the ops read. */
  options: RunOptions;
  /** Seed of the run's random streams. */
  seed: number;
  /** Parameter and state variables by graph name. */
  params: ReadonlyMap<string, tf.Variable>;
  /** State variables by graph name. */
  state: ReadonlyMap<string, tf.Variable>;
  /** Parameters being trained (taped step; default all). */
  trainable?: ReadonlySet<tf.Variable>;
  /** Whether gradients must flow into the graph inputs (taped step). */
  inputGradients: boolean;
  /** Hooks called per node. */
  hooks: readonly NodeHook[];
  /** Auxiliary losses the ops add. */
  losses: AuxLoss[];
  /** State updates collected; applied once the run (or the optimizer step) ends. */
  stateUpdates: Map<tf.Variable, tf.Tensor>;
  /** Decisions: recorded by a decide step, replayed by a taped step. */
  decisions: Decisions;
  /** The session the run belongs to, if any. */
  session?: SessionFrame;
  /** Where ops keep tensors derived from the model's (inference runs only). */
  derived?: DerivedTensors;
}

/** A session as a run sees it: what earlier runs stored, and what this one writes. */
export interface SessionFrame {
  /** Values stored by earlier runs (or windows), by `<node path>/<name>`. */
  values: ReadonlyMap<string, SessionValue>;
  /** Values this run writes, by `<node path>/<name>`, applied when it ends. */
  writes: Map<string, SessionValue>;
}

/** Where each output of a scope comes from: per output, pieces of rows. */
export interface Piece {
  /** Original rows, ascending. */
  rows: Int32Array;
  /** Their values. */
  tensor: tf.Tensor;
}

/** What one scope run produced. */
export interface ScopeResult {
  /** The wanted outputs, rows in input order. */
  outputs: Map<string, tf.Tensor>;
  /** Per wanted output, the node that produced each row's value (top graph only). */
  servedBy: Record<string, string[]>;
}

/** A step of the node loop that must wait: a decision or a row gather. */
type Wait = Promise<unknown>;

interface Slot {
  tensor: tf.Tensor;
  /** Original row indices the tensor holds, or undefined for values without a batch axis. */
  rows?: Int32Array;
}

interface Plan {
  /** Nodes that run. */
  needed: boolean[];
  /** Per value, the index of its last reader among the nodes that run. */
  last: Map<string, number>;
  /** Per node index, the inputs it does not read in this run (its op's `skipsInputs`). */
  skips: ReadonlyMap<number, ReadonlySet<number>>;
}

const planCache = new WeakMap<CompiledGraph, Map<string, Plan>>();
const skippersCache = new WeakMap<CompiledGraph, number[]>();

/** Indices of the nodes of `scope` whose op may skip inputs (cached per compiled graph). */
function skippers(scope: CompiledGraph): number[] {
  let found = skippersCache.get(scope);
  if (found === undefined) {
    found = [];
    scope.nodes.forEach((c, i) => {
      if (c.def.skipsInputs !== undefined) found!.push(i);
    });
    skippersCache.set(scope, found);
  }
  return found;
}

/** Per node that skips inputs under `options`, which ones (ops' `skipsInputs`). */
function skippedInputs(scope: CompiledGraph, options: RunOptions): Map<number, ReadonlySet<number>> {
  const skips = new Map<number, ReadonlySet<number>>();
  for (const i of skippers(scope)) {
    const c = scope.nodes[i]!;
    const skipped = c.def.skipsInputs!(c.attrs, options);
    if (skipped.length > 0) skips.set(i, new Set(skipped));
  }
  return skips;
}

/**
 * Which nodes the wanted values depend on, and each value's last reader (cached per compiled
 * graph, wanted set and skipped inputs). In a decide step the wanted values are the inputs of the
 * nodes that decide in training. An input a node skips in this run (a residual branch of a
 * shallower sub-network) does not make the nodes that compute it run.
 */
function planFor(scope: CompiledGraph, wanted: readonly string[], options: RunOptions): Plan {
  let cache = planCache.get(scope);
  if (cache === undefined) {
    cache = new Map();
    planCache.set(scope, cache);
  }
  const skips = skippedInputs(scope, options);
  let key = wanted.join('\u0000');
  for (const [i, set] of skips) key += `\u0001${i}:${[...set].join(',')}`;
  let plan = cache.get(key);
  if (plan === undefined) {
    const nodes = scope.nodes;
    const neededValues = new Set(wanted);
    const needed = new Array<boolean>(nodes.length).fill(false);
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i]!.node;
      if (!node.outputs.some((o) => neededValues.has(o))) continue;
      needed[i] = true;
      const skipped = skips.get(i);
      node.inputs.forEach((input, k) => {
        if (skipped?.has(k) !== true) neededValues.add(input);
      });
    }
    const last = new Map<string, number>();
    nodes.forEach((c, i) => {
      const skipped = skips.get(i);
      if (!needed[i]) return;
      c.node.inputs.forEach((name, k) => {
        if (skipped?.has(k) !== true) last.set(name, i);
      });
    });
    for (const name of wanted) last.set(name, Number.POSITIVE_INFINITY);
    plan = { needed, last, skips };
    cache.set(key, plan);
  }
  return plan;
}

/** Indices of the nodes of `scope` that decide in a training step. */
export function trainingDeciders(scope: CompiledGraph): number[] {
  const found: number[] = [];
  scope.nodes.forEach((c, i) => {
    if (c.def.decide !== undefined && c.def.decidesInTraining === true) found.push(i);
  });
  return found;
}

/** Positions of `wanted` (ascending original rows) inside `held` (ascending, a superset). */
function positionsOf(held: Int32Array, wanted: Int32Array): Int32Array {
  const out = new Int32Array(wanted.length);
  let j = 0;
  for (let i = 0; i < wanted.length; i++) {
    while (held[j] !== wanted[i]) j++;
    out[i] = j;
  }
  return out;
}

/** What the node loop needs of a compiled node on every run, worked out once. */
interface NodeData {
  /** Parameter variables by local name. */
  params: Record<string, tf.Tensor>;
  /** State variables by local name (the default ones). */
  state: Record<string, tf.Tensor>;
  /** State variables by local name, per declared variant. */
  variants: ReadonlyMap<string, Record<string, tf.Tensor>>;
  /** The parameter variables. */
  variables: tf.Variable[];
  /** Whether the node has state. */
  hasState: boolean;
  /** Per input, false: no input needs a gradient (every step but the taped one). */
  noGradients: readonly boolean[];
  /** Per output, whether it is batch-major. */
  batchMajor: readonly boolean[];
}

const tensorCache = new WeakMap<CompiledNode, NodeData>();

/** A node's variables by local name and what else the loop reads of it (cached per compiled node). */
function nodeVariables(frame: Frame, c: CompiledNode): NodeData {
  let entry = tensorCache.get(c);
  if (entry === undefined) {
    const pick = (list: CompiledNode['params'], store: ReadonlyMap<string, tf.Variable>, variant?: string) =>
      Object.fromEntries(
        list.filter((t) => t.variant === variant).map((t) => [t.local, store.get(t.info.name)!]),
      );
    const params = pick(c.params, frame.params);
    const state = pick(c.state, frame.state);
    const variantNames = new Set(c.state.flatMap((t) => (t.variant === undefined ? [] : [t.variant])));
    entry = {
      params,
      state,
      variants: new Map([...variantNames].map((v) => [v, pick(c.state, frame.state, v)])),
      variables: Object.values(params),
      hasState: Object.keys(state).length > 0,
      noGradients: Object.freeze(c.node.inputs.map(() => false)),
      batchMajor: c.outputs.map((o) => o.shape[0] === BATCH),
    };
    tensorCache.set(c, entry);
  }
  return entry;
}

/**
 * The state a node reads and updates in this run: the variant its op selects from the run
 * options, or the default. Throws, naming the node, for a variant it does not declare.
 */
function stateFor(c: CompiledNode, data: NodeData, options: RunOptions): Record<string, tf.Tensor> {
  const variant = c.def.stateVariant?.(c.attrs, options);
  if (variant === undefined) return data.state;
  const state = data.variants.get(variant);
  if (state === undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      `Node '${c.path}' (${c.def.type}) has no state variant '${variant}'; it declares ` +
        `${[...data.variants.keys()].map((v) => `'${v}'`).join(', ') || 'none'}. Add it with the ` +
        "'core.add-state-variants' pass, or run without selecting it.",
      { node: c.path, op: c.def.type },
    );
  }
  return state;
}

const modelTensorCache = new WeakMap<ReadonlyMap<string, tf.Variable>, ReadonlySet<tf.Tensor>>();

/**
 * A model's parameter and state variables as one set, cached by its parameter map (a model's
 * maps never change, as its nodes' cached variables assume).
 */
function modelTensors(frame: Frame): ReadonlySet<tf.Tensor> {
  let tensors = modelTensorCache.get(frame.params);
  if (tensors === undefined) {
    tensors = new Set<tf.Tensor>([...frame.params.values(), ...frame.state.values()]);
    modelTensorCache.set(frame.params, tensors);
  }
  return tensors;
}

/** The event hooks see before a node runs; its inputs are set once gathered. */
function nodeEvent(
  c: CompiledNode,
  parent: string | undefined,
  rows: number,
  training: boolean,
  taped: boolean,
): NodeEvent {
  const { path, node, attrs } = c;
  return parent === undefined
    ? { path, node, attrs, inputs: [], rows, training, taped }
    : { path, parent, node, attrs, inputs: [], rows, training, taped };
}

/**
 * The event hooks see once a node ran: `event`'s fields and what it computed. Written out field
 * by field: a spread of `event` costs several times more, per node.
 */
function doneEvent(
  event: NodeEvent,
  outputs: readonly tf.Tensor[],
  records: Readonly<Record<string, unknown>>,
  flops: number,
  bytes: number,
): NodeDoneEvent {
  const { path, parent, node, attrs, inputs, rows, training, taped } = event;
  return parent === undefined
    ? { path, node, attrs, inputs, rows, training, taped, outputs, records, flops, bytes }
    : { path, parent, node, attrs, inputs, rows, training, taped, outputs, records, flops, bytes };
}

const shapesOf = (ts: readonly tf.Tensor[]) => ts.map((t) => t.shape);

/**
 * Checks an output against what `inferShape` said: dtype, rank, every numeric dimension, the
 * batch dimension against the rows computed, and each symbolic dimension against the size it
 * took earlier in this run (binding it on first sight).
 */
function checkOutput(c: CompiledNode, t: tf.Tensor, info: ValueInfo, dims: Map<string, number>): void {
  let ok = t.dtype === info.dtype && t.rank === info.shape.length;
  for (let axis = 0; ok && axis < info.shape.length; axis++) {
    const dim = info.shape[axis]!;
    const size = t.shape[axis]!;
    if (typeof dim === 'number') ok = size === dim;
    else {
      const bound = dims.get(dim);
      if (bound === undefined) dims.set(dim, size);
      else ok = bound === size;
    }
  }
  if (!ok) {
    const bound = info.shape.map((d) => (typeof d === 'string' && dims.has(d) ? `${d}=${dims.get(d)}` : d));
    throw new DynnError(
      'SHAPE_MISMATCH',
      `Node '${c.path}' (${c.def.type}) returned ${t.dtype}${formatShape(t.shape)} for output '${info.name}', ` +
        `but its inferShape says ${info.dtype}${formatShape(bound)}: the op's forward and inferShape disagree.`,
      { node: c.path, op: c.def.type },
    );
  }
}

/** Concrete shape of a value in this run: symbolic dimensions at their bound sizes. */
function concrete(info: ValueInfo, dims: ReadonlyMap<string, number>): number[] {
  return info.shape.map((d) => (typeof d === 'number' ? d : (dims.get(d) ?? 1)));
}

/** The cost of a node's sub-graphs on concrete shapes (static costs and full costs). */
export function subGraphFlopsContext(c: CompiledNode): FlopsContext {
  return {
    subGraphFlops(attr, inputs, index) {
      const sub = findSubGraph(c, attr, index);
      if (sub === undefined) throw new Error(`node '${c.path}' has no sub-graph '${attr}'`);
      return graphFlops(sub.compiled, inputs);
    },
  };
}

/** FLOPs of one run of a compiled graph on inputs of concrete shapes. */
export function graphFlops(scope: CompiledGraph, inputs: readonly number[][]): number {
  const dims = new Map<string, number>();
  scope.graph.inputs.forEach((info, i) => {
    info.shape.forEach((d, axis) => {
      if (typeof d === 'string' && inputs[i] !== undefined) dims.set(d, inputs[i]![axis]!);
    });
  });
  let total = 0;
  for (const c of scope.nodes) {
    total += c.def.flops(
      c.attrs,
      c.inputs.map((v) => concrete(v, dims)),
      c.outputs.map((v) => concrete(v, dims)),
      subGraphFlopsContext(c),
    );
  }
  return total;
}

/** In a run's report a sub-graph costs nothing at its enclosing node: its own nodes report it. */
const noSubGraphFlops = (options: RunOptions): FlopsContext => ({ subGraphFlops: () => 0, options });

/**
 * The node loop: one interpreter for inference, the decide step and the taped step of training,
 * and sub-graphs. A generator so that one loop serves an async driver (inference, decide step:
 * it awaits what the loop yields) and a sync one (taped step, sub-graphs: nothing may be
 * yielded). See docs/decisions/0005-one-interpreter.md.
 *
 * `feeds` are the scope's inputs (the caller keeps them); `parent` is the enclosing node's path
 * for a sub-graph, which computes on every row it is given (rows retire only at the top graph).
 */
export function* runScope(
  frame: Frame,
  scope: CompiledGraph,
  feeds: ReadonlyMap<string, tf.Tensor>,
  wanted: readonly string[],
  parent?: string,
): Generator<Wait, ScopeResult, unknown> {
  const top = parent === undefined;
  const taped = frame.mode === 'taped';
  // A decide step runs the top graph up to its last node that decides in training.
  const deciders = top && frame.mode === 'decide' ? trainingDeciders(scope) : [];
  const plan =
    top && frame.mode === 'decide'
      ? planFor(
          scope,
          deciders.flatMap((i) => scope.nodes[i]!.node.inputs),
          frame.options,
        )
      : planFor(scope, wanted, frame.options);
  const { needed, last, skips } = plan;
  const first = feeds.values().next().value as tf.Tensor | undefined;
  const batchInput = scope.graph.inputs.find((v) => v.shape[0] === BATCH);
  const batchSize = batchInput ? feeds.get(batchInput.name)!.shape[0]! : (first?.shape[0] ?? 1);
  const dims = new Map<string, number>();
  for (const info of scope.graph.inputs) {
    const t = feeds.get(info.name)!;
    info.shape.forEach((d, axis) => {
      if (typeof d === 'string') dims.set(d, t.shape[axis]!);
    });
  }
  dims.set(BATCH, batchSize);
  const fullDims = new Map(dims);

  const slots = new Map<string, Slot>();
  const holders = new Map<tf.Tensor, number>();
  // Tensors the caller or the model owns are never disposed here, even if an op passes them on.
  const feedTensors = new Set<tf.Tensor>(feeds.values());
  const modelOwned = modelTensors(frame);
  const external = (t: tf.Tensor) => feedTensors.has(t) || modelOwned.has(t);
  // In the taped step the caller's tidy disposes intermediates: gradients may still need them.
  const owned = (t: tf.Tensor) => !taped && !external(t);
  const hold = (name: string, slot: Slot) => {
    slots.set(name, slot);
    holders.set(slot.tensor, (holders.get(slot.tensor) ?? 0) + 1);
  };
  const release = (name: string) => {
    const slot = slots.get(name);
    if (slot === undefined) return;
    slots.delete(name);
    const count = (holders.get(slot.tensor) ?? 1) - 1;
    holders.set(slot.tensor, count);
    if (count === 0 && owned(slot.tensor)) slot.tensor.dispose();
  };
  const all = new Int32Array(batchSize);
  for (let i = 0; i < batchSize; i++) all[i] = i;
  for (const [name, t] of feeds) {
    hold(name, scope.values.get(name)!.shape[0] === BATCH ? { tensor: t, rows: all } : { tensor: t });
  }
  let active = all;
  const pieces = new Map<string, Piece[]>();
  const servedBy: Record<string, string[]> = {};
  if (top) for (const name of wanted) servedBy[name] = new Array<string>(batchSize).fill('');
  const watching = frame.hooks.length > 0;
  const wantedSet = new Set(wanted);
  // The tape tracks which values some trainable parameter (or a graph input) influences.
  const influenced = new Set<string>(taped && (frame.inputGradients || !top) ? feeds.keys() : []);

  try {
    // Index loops: a for...of in this generator costs an iterator per loop, per node.
    for (let index = 0; index < scope.nodes.length; index++) {
      const c = scope.nodes[index]!;
      const decidesHere = deciders.includes(index);
      if (!needed[index] && !decidesHere) continue;
      const node = c.node;
      // Events are made only when some hook watches.
      const event = watching ? nodeEvent(c, parent, active.length, frame.training, taped) : undefined;
      if (active.length === 0) {
        if (event !== undefined) {
          const done = doneEvent(event, [], {}, 0, 0);
          if (top) done.fullFlops = fullCost(c, fullDims, frame.options);
          for (const hook of frame.hooks) hook.afterNode?.(done);
        }
        continue;
      }
      const inputs: tf.Tensor[] = [];
      // Inputs the op skips in this run were not computed: it gets the others, in order.
      const skipped = skips.get(index);
      for (let k = 0; k < node.inputs.length; k++) {
        if (skipped?.has(k) === true) continue;
        const name = node.inputs[k]!;
        const slot = slots.get(name)!;
        if (slot.rows === undefined || slot.rows === active) {
          inputs.push(slot.tensor);
          continue;
        }
        const taken = (yield takeRows(slot.tensor, positionsOf(slot.rows, active))) as tf.Tensor;
        release(name);
        hold(name, { tensor: taken, rows: active });
        inputs.push(taken);
      }
      if (event !== undefined) {
        event.inputs = inputs;
        for (const hook of frame.hooks) hook.beforeNode?.(event);
      }
      const data = nodeVariables(frame, c);
      const { params, variables } = data;
      const state = stateFor(c, data, frame.options);
      const trainable = frame.trainable;
      const ownsTrainable =
        trainable === undefined ? variables.length > 0 : variables.some((p) => trainable.has(p));
      // Only the taped step tracks which inputs need a gradient.
      const read = skipped === undefined ? node.inputs : node.inputs.filter((_, k) => !skipped.has(k));
      const inputGradients = taped
        ? read.map((name) => influenced.has(name))
        : skipped === undefined
          ? data.noGradients
          : read.map(() => false);
      if (taped && (ownsTrainable || inputGradients.some(Boolean))) {
        for (const name of node.outputs) influenced.add(name);
      }
      // A frozen node with state (batch norm) runs in inference mode, as a frozen Keras layer does:
      // it normalises with its moving statistics and leaves them as they are (fine-tuning).
      const frozenWithState = variables.length > 0 && !ownsTrainable && data.hasState;
      let calls = 0;
      const { context, effects } = createOpContext({
        node: parent === undefined ? node : { ...node, name: c.path },
        attrs: c.attrs,
        params,
        state,
        training: frame.training && !frozenWithState,
        options: frame.options,
        rows: { batchSize, indices: active },
        seed: frame.seed,
        inputGradients,
        ...(frame.session === undefined || c.def.sessionState === undefined
          ? {}
          : { session: sessionView(frame.session, c) }),
        ...(frame.derived === undefined ? {} : { derived: frame.derived }),
        runGraph: (attr, subInputs, options) => {
          const sub = findSubGraph(c, attr, options?.index);
          if (sub === undefined) {
            throw new DynnError(
              'INVALID_GRAPH',
              `Node '${c.path}' (${c.def.type}) has no sub-graph '${attr}'${options?.index === undefined ? '' : ` [${options.index}]`}.`,
              { node: c.path, op: c.def.type },
            );
          }
          calls += 1;
          return runSubGraph(
            frame,
            sub.compiled,
            subInputs,
            c.path,
            seedFor(frame.seed, `${sub.compiled.prefix}#${calls}`),
          );
        },
      });
      let result: tf.Tensor[] | OpResult | Promise<unknown>;
      try {
        if (c.def.decide !== undefined) {
          if (frame.mode === 'infer') {
            (context as { decision: unknown }).decision = yield Promise.resolve(
              c.def.decide(context, inputs),
            );
          } else if (c.def.decidesInTraining === true) {
            if (frame.mode === 'decide') {
              const decision = yield Promise.resolve(c.def.decide(context, inputs));
              frame.decisions.set(c.path, decision);
              (context as { decision: unknown }).decision = decision;
            } else if (!frame.decisions.has(c.path)) {
              throw new DynnError(
                'INVALID_OPTION',
                `Node '${c.path}' (${c.def.type}) decides in training, but the taped step got no decision for it: ` +
                  'run the decide step first (decideForTraining), as Trainer.step does.',
                { node: c.path, op: c.def.type },
              );
            } else {
              (context as { decision: unknown }).decision = frame.decisions.get(c.path);
            }
          }
          if (!needed[index]) {
            disposeEffects(effects);
            continue;
          }
        }
        result = c.def.forward(context, inputs);
      } catch (error) {
        disposeEffects(effects);
        if (error instanceof DynnError) throw error;
        throw new DynnError(
          'INVALID_INPUT',
          `Node '${c.path}' (${c.def.type}) failed: ${(error as Error).message}`,
          {
            node: c.path,
            op: c.def.type,
          },
        );
      }
      if (result instanceof Promise) {
        throw new DynnError(
          'INVALID_GRAPH',
          `Node '${c.path}' (${c.def.type}): forward returned a Promise. A forward is synchronous; ` +
            "read values back in the op's decide step instead.",
          { node: c.path, op: c.def.type },
        );
      }
      const outputs = Array.isArray(result) ? result : result.outputs;
      const retire = Array.isArray(result) ? undefined : result.retire;
      const rowsBefore = active;
      dims.set(BATCH, rowsBefore.length);
      try {
        if (outputs.length !== c.outputs.length) {
          throw new DynnError(
            'SHAPE_MISMATCH',
            `Node '${c.path}' (${c.def.type}) returned ${outputs.length} outputs; it declares ${c.outputs.length}.`,
            { node: c.path, op: c.def.type },
          );
        }
        for (let i = 0; i < outputs.length; i++) checkOutput(c, outputs[i]!, c.outputs[i]!, dims);
        if (effects.losses.length > 0 || effects.stateUpdates.size > 0) checkEffectsLive(c, effects);
        if (retire !== undefined && (frame.mode !== 'infer' || !top)) {
          throw new DynnError(
            'INVALID_GRAPH',
            `Node '${c.path}' (${c.def.type}) retired rows ${top ? 'in training' : 'inside a sub-graph'}; ` +
              'rows may leave only in inference, at the top graph.',
            { node: c.path, op: c.def.type },
          );
        }
      } catch (error) {
        tf.dispose([...outputs.filter(owned), ...Object.values(retire?.outputs ?? {})]);
        disposeEffects(effects);
        throw error;
      }
      outputs.forEach((t, i) => {
        const name = node.outputs[i]!;
        const batchMajor = data.batchMajor[i]!;
        hold(name, batchMajor ? { tensor: t, rows: rowsBefore } : { tensor: t });
        if (wantedSet.has(name)) {
          // A requested output is kept for the rows it was computed on now, before any of them
          // retire at a later node. Tensors the caller or the model owns are cloned, never handed
          // out; the piece's hold keeps the loop from disposing the tensor.
          const tensor = external(t) ? t.clone() : t;
          holders.set(tensor, (holders.get(tensor) ?? 0) + 1);
          const rows = batchMajor ? rowsBefore : all;
          const list = pieces.get(name) ?? [];
          list.push({ rows, tensor });
          pieces.set(name, list);
          if (top) for (const row of rows) servedBy[name]![row] = c.path;
        }
      });
      if (retire !== undefined) {
        const retired = retiredRows(c, scope, retire, active);
        for (const [name, t] of Object.entries(retire.outputs)) {
          if (!wantedSet.has(name)) {
            t.dispose();
            continue;
          }
          const list = pieces.get(name) ?? [];
          list.push({ rows: retired, tensor: t });
          pieces.set(name, list);
          for (const row of retired) servedBy[name]![row] = c.path;
        }
        const gone = new Set(retired);
        active = active.filter((row) => !gone.has(row));
      }
      // What the forward derived for this call alone (a taped or untaped training step) goes now.
      tf.dispose(effects.transient);
      frame.losses.push(...effects.losses);
      for (const [local, value] of effects.stateUpdates) {
        const variable = state[local] as tf.Variable;
        frame.stateUpdates.get(variable)?.dispose();
        frame.stateUpdates.set(variable, tf.keep(value));
      }
      if (effects.sessionWrites.size > 0)
        keepSessionWrites(frame, c, effects, rowsBefore.length === batchSize);
      if (event !== undefined) {
        const done = doneEvent(
          event,
          outputs,
          effects.records,
          c.def.flops(c.attrs, shapesOf(inputs), shapesOf(outputs), noSubGraphFlops(frame.options)) +
            effects.compute.flops,
          effects.compute.bytes,
        );
        if (top) {
          for (const [d, size] of dims) if (d !== BATCH && !fullDims.has(d)) fullDims.set(d, size);
          done.fullFlops = fullCost(c, fullDims, frame.options);
        }
        for (const hook of frame.hooks) hook.afterNode?.(done);
      }
      for (let k = 0; k < node.inputs.length; k++) {
        const name = node.inputs[k]!;
        if (last.get(name) === index) release(name);
      }
    }

    const outputs = new Map<string, tf.Tensor>();
    for (const name of wanted) {
      const list = pieces.get(name) ?? [];
      pieces.delete(name);
      const assembled = assemble(name, list, batchSize);
      outputs.set(name, assembled instanceof Promise ? ((yield assembled) as tf.Tensor) : assembled);
    }
    return { outputs, servedBy };
  } finally {
    for (const name of [...slots.keys()]) release(name);
    for (const list of pieces.values()) tf.dispose(list.map((p) => p.tensor).filter(owned));
  }
}

/** What a node reads of the run's session: its own values, and what its op declares. */
function sessionView(session: SessionFrame, c: CompiledNode) {
  return {
    read: (name: string) => session.values.get(`${c.path}/${name}`),
    specs: c.def.sessionState!(c.attrs, c.inputs),
  };
}

/** Frees what a node handed over (losses, state updates, session writes) when it is not used. */
function disposeEffects(effects: OpSideEffects): void {
  tf.dispose([
    ...effects.transient,
    ...effects.losses.map((l) => l.value),
    ...effects.stateUpdates.values(),
    ...sessionTensors(effects.sessionWrites.values()),
  ]);
}

/**
 * Moves a node's session writes into the run's, keyed `<node path>/<name>`: applied to the
 * session when the run (or training window) ends; dropped by a decide step, which only decides.
 * A session holds every row of the batch, so a node that writes one after rows retired is refused.
 */
function keepSessionWrites(frame: Frame, c: CompiledNode, effects: OpSideEffects, allRows: boolean): void {
  const session = frame.session;
  if (session === undefined || frame.mode === 'decide') {
    tf.dispose(sessionTensors(effects.sessionWrites.values()));
    return;
  }
  if (!allRows) {
    tf.dispose(sessionTensors(effects.sessionWrites.values()));
    throw new DynnError(
      'INVALID_GRAPH',
      `Node '${c.path}' (${c.def.type}) writes session state after rows retired: a session keeps every row ` +
        'of the batch. Run the session without retiring rows (e.g. exits off).',
      { node: c.path, op: c.def.type },
    );
  }
  for (const [name, value] of effects.sessionWrites) {
    const key = `${c.path}/${name}`;
    tf.dispose(sessionTensors([session.writes.get(key)]));
    session.writes.set(key, typeof value === 'number' ? value : tf.keep(value));
  }
}

/**
 * Throws, naming the node, when a loss or state update it handed over was disposed already:
 * typically made inside the op's own `tf.tidy`, which disposed it on return.
 */
function checkEffectsLive(c: CompiledNode, effects: OpSideEffects): void {
  const dead = [
    ...effects.losses.filter((l) => l.value.isDisposed).map((l) => `loss '${l.name}'`),
    ...[...effects.stateUpdates].filter(([, t]) => t.isDisposed).map(([name]) => `state update '${name}'`),
  ];
  if (dead.length === 0) return;
  throw new DynnError(
    'INVALID_GRAPH',
    `Node '${c.path}' (${c.def.type}) handed over a disposed ${dead.join(', ')}: call ctx.addLoss and ` +
      'ctx.updateState outside any tf.tidy in the forward, or return the tensor from the tidy first.',
    { node: c.path, op: c.def.type },
  );
}

/** Full-batch cost of a top-graph node under the run's options, every dimension at its actual size. */
function fullCost(c: CompiledNode, dims: ReadonlyMap<string, number>, options: RunOptions): number {
  return c.def.flops(
    c.attrs,
    c.inputs.map((v) => concrete(v, dims)),
    c.outputs.map((v) => concrete(v, dims)),
    { ...subGraphFlopsContext(c), options },
  );
}

function retiredRows(
  c: CompiledNode,
  scope: CompiledGraph,
  retire: NonNullable<OpResult['retire']>,
  active: Int32Array,
): Int32Array {
  const rows = retire.rows;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (!(r >= 0 && r < active.length) || (i > 0 && r <= rows[i - 1]!)) {
      throw new DynnError(
        'INVALID_GRAPH',
        `Node '${c.path}' (${c.def.type}) retired row ${r}; retired rows must be ascending positions below ${active.length}.`,
        { node: c.path, op: c.def.type },
      );
    }
  }
  for (const [name, t] of Object.entries(retire.outputs)) {
    if (!scope.graph.outputs.some((o) => o.name === name)) {
      throw new DynnError(
        'INVALID_GRAPH',
        `Node '${c.path}' retired rows into unknown graph output '${name}'.`,
        {
          node: c.path,
          op: c.def.type,
        },
      );
    }
    if (t.shape[0] !== rows.length) {
      throw new DynnError(
        'SHAPE_MISMATCH',
        `Node '${c.path}' gave ${t.shape[0]} rows of output '${name}' for ${rows.length} retired rows.`,
        { node: c.path, op: c.def.type },
      );
    }
  }
  return Int32Array.from(rows, (r) => active[r]!);
}

/**
 * Joins the row pieces of one output and puts rows back in input order. Synchronous (a plain
 * value, not a promise) when one piece holds every row, as always in training and sub-graphs.
 */
function assemble(name: string, pieces: Piece[], batchSize: number): Promise<tf.Tensor> | tf.Tensor {
  if (pieces.length === 1 && pieces[0]!.rows.length === batchSize) return pieces[0]!.tensor;
  const order = new Int32Array(batchSize).fill(-1);
  let offset = 0;
  for (const piece of pieces) {
    piece.rows.forEach((row, k) => {
      order[row] = offset + k;
    });
    offset += piece.rows.length;
  }
  const missing = order.indexOf(-1);
  if (missing >= 0) {
    tf.dispose(pieces.map((p) => p.tensor));
    throw new DynnError(
      'INVALID_GRAPH',
      `Row ${missing} of output '${name}' was retired by a node that gave no value for '${name}'.`,
    );
  }
  const joined = pieces.length === 1 ? pieces[0]!.tensor : tf.concat(pieces.map((p) => p.tensor));
  return takeRows(joined, order).finally(() => {
    if (joined !== pieces[0]!.tensor) joined.dispose();
    tf.dispose(pieces.map((p) => p.tensor));
  });
}

/**
 * Drives the loop synchronously: the taped step and sub-graphs, where nothing may wait.
 */
export function driveSync<T>(loop: Generator<Wait, T, unknown>, where: string): T {
  const step = loop.next();
  if (step.done) return step.value;
  step.value.catch(() => undefined);
  loop.return(undefined as T);
  throw new DynnError(
    'INVALID_GRAPH',
    `${where} had to wait (read values back) where it runs synchronously: in a training step's taped step or a sub-graph.`,
  );
}

/** Drives the loop asynchronously: inference and the decide step, awaiting what it yields. */
export async function driveAsync<T>(loop: Generator<Wait, T, unknown>): Promise<T> {
  let step = loop.next();
  while (!step.done) {
    let value: unknown;
    try {
      value = await step.value;
    } catch (error) {
      step = loop.throw(error);
      continue;
    }
    step = loop.next(value);
  }
  return step.value;
}

/** Runs a sub-graph on `inputs` (its input order) in the enclosing run's frame, synchronously. */
function runSubGraph(
  frame: Frame,
  scope: CompiledGraph,
  inputs: readonly tf.Tensor[],
  parent: string,
  seed: number,
): tf.Tensor[] {
  const declared = scope.graph.inputs;
  if (inputs.length !== declared.length) {
    throw new DynnError(
      'INVALID_INPUT',
      `Node '${parent}' gave its sub-graph '${scope.prefix.slice(0, -1)}' ${inputs.length} inputs; it takes ${declared.length} (${declared.map((d) => d.name).join(', ')}).`,
      { node: parent },
    );
  }
  const feeds = new Map<string, tf.Tensor>();
  declared.forEach((info, i) => {
    const t = inputs[i]!;
    const fits =
      t.dtype === info.dtype &&
      t.rank === info.shape.length &&
      info.shape.every((d, axis) => typeof d !== 'number' || d === t.shape[axis]);
    if (!fits) {
      throw new DynnError(
        'SHAPE_MISMATCH',
        `Node '${parent}' gave its sub-graph '${scope.prefix.slice(0, -1)}' input '${info.name}' as ` +
          `${t.dtype}${formatShape(t.shape)}; it takes ${info.dtype}${formatShape(info.shape)}.`,
        { node: parent },
      );
    }
    feeds.set(info.name, t);
  });
  const wanted = scope.graph.outputs.map((o) => o.name);
  const inner: Frame = { ...frame, seed };
  const { outputs } = driveSync(
    runScope(inner, scope, feeds, wanted, parent),
    `Sub-graph '${scope.prefix.slice(0, -1)}'`,
  );
  return wanted.map((name) => outputs.get(name)!);
}
