import * as tf from '@tensorflow/tfjs-core';
import { DynnError, notATensor } from './errors.js';
import { type Attrs, BATCH, type GraphNode } from './ir.js';
import type { Model } from './model.js';
import { type OpResult, type RunOptions, resolveAttrs } from './op.js';
import { type AuxLoss, createOpContext, type OpSideEffects } from './op-context.js';
import { takeRows } from './ops/basic/tensor-rows.js';
import { elementAt, firstNonFinite, type NodeTensor, nodeTensorSpecs } from './validate.js';

/** What {@link Model.run} takes. */
export interface RunRequest {
  /** A tensor for a single-input graph, or tensors by input name. The caller keeps ownership. */
  inputs: tf.Tensor | Record<string, tf.Tensor>;
  /** Deployment choices for this call, read by ops (exit thresholds, widths...). */
  options?: RunOptions;
  /** Run ops in training mode (dropout on, batch statistics) without taking gradients. */
  training?: boolean;
  /** Return a {@link ComputeReport} (default true). */
  report?: boolean;
  /** Seed for the ops' random streams (default 0). */
  seed?: number;
  /** Reject inputs holding NaN or infinity (default true; costs one small readback per input). */
  checkInputs?: boolean;
  /** Graph outputs to compute (default all). Nodes no requested output depends on are skipped. */
  outputs?: readonly string[];
}

/** What one node computed during a run. */
export interface NodeReport {
  /** The node's name. */
  name: string;
  /** The node's op type. */
  op: string;
  /** Rows of the batch the node computed on (fewer than the batch once rows retired). */
  rows: number;
  /** Floating-point operations it executed on those rows. */
  flops: number;
  /** Statistics the op recorded (`ctx.record`): exit counts, expert loads... */
  stats: Record<string, unknown>;
}

/** What a run actually computed: the measured side of every claim of saved compute. */
export interface ComputeReport {
  /** Rows given to the run. */
  batchSize: number;
  /** FLOPs executed, summed over nodes. */
  flops: number;
  /** FLOPs had every row gone through every node. */
  fullFlops: number;
  /** One entry per node that ran, in execution order. */
  nodes: NodeReport[];
  /** Per graph output, the node that produced each row's value, in input row order. */
  servedBy: Record<string, string[]>;
}

/** What {@link Model.run} returns. The caller owns (disposes) every tensor in it. */
export interface RunResult {
  /** Graph outputs by name, rows in input order. */
  outputs: Record<string, tf.Tensor>;
  /** Auxiliary losses the ops added. */
  losses: AuxLoss[];
  /** What the run computed; absent when the request set `report: false`. */
  report?: ComputeReport;
}

interface Slot {
  tensor: tf.Tensor;
  /** Original row indices the tensor holds, or undefined for values without a batch axis. */
  rows?: Int32Array;
}

interface Piece {
  rows: Int32Array;
  tensor: tf.Tensor;
}

const planCache = new WeakMap<Model, Map<string, { needed: boolean[]; last: Map<string, number> }>>();
const attrCache = new WeakMap<Model, Map<string, Attrs>>();

/** A node's attributes with defaults filled in (cached per model: graphs are immutable data). */
function nodeAttrs(model: Model, node: GraphNode): Attrs {
  let cache = attrCache.get(model);
  if (cache === undefined) {
    cache = new Map();
    attrCache.set(model, cache);
  }
  const cached = cache.get(node.name);
  if (cached !== undefined) return cached;
  const attrs = resolveAttrs(model.runtime.op(node.op, node.name), node.attrs, node.name);
  cache.set(node.name, attrs);
  return attrs;
}

const nodeTensorCache = new WeakMap<
  Model,
  Map<string, { params: Record<string, tf.Tensor>; state: Record<string, tf.Tensor> }>
>();

/** The node's parameters and state by local name (cached per model). */
export function nodeTensors(model: Model, node: GraphNode) {
  let cache = nodeTensorCache.get(model);
  if (cache === undefined) {
    cache = new Map();
    nodeTensorCache.set(model, cache);
  }
  let entry = cache.get(node.name);
  if (entry === undefined) {
    const specs = nodeTensorSpecs(
      model.runtime,
      node,
      node.inputs.map((name) => model.values.get(name)!),
    );
    const pick = (list: NodeTensor[], store: ReadonlyMap<string, tf.Variable>) =>
      Object.fromEntries(list.map((t) => [t.local, store.get(t.info.name)!]));
    entry = { params: pick(specs.params, model.params), state: pick(specs.state, model.state) };
    cache.set(node.name, entry);
  }
  return entry;
}

/**
 * The flat index of the first NaN or infinite element, or -1 when every element is finite. On
 * cpu/wasm the data already lives on the host and a JS scan is cheapest; on GPU backends the check
 * runs on the device and reads back one flag (the data itself only when something is wrong).
 */
async function nonFiniteIndex(t: tf.Tensor): Promise<number> {
  const backend = tf.getBackend();
  if (backend !== 'cpu' && backend !== 'wasm') {
    const bad = tf.tidy(() => tf.any(tf.logicalNot(tf.isFinite(t))));
    const [flag] = await bad.data();
    bad.dispose();
    if (!flag) return -1;
  }
  return firstNonFinite((await t.data()) as Float32Array);
}

/** Checks and names the feeds of a run; returns them with the batch size. */
export async function prepareFeeds(
  model: Model,
  inputs: tf.Tensor | Record<string, tf.Tensor>,
  checkValues: boolean,
): Promise<{ feeds: Map<string, tf.Tensor>; batchSize: number }> {
  const declared = model.graph.inputs;
  const names = declared.map((d) => d.name).join(', ');
  if (!(inputs instanceof tf.Tensor)) {
    if (inputs === undefined || inputs === null) {
      throw new DynnError(
        'INVALID_INPUT',
        `No inputs given: pass a tf.Tensor${declared.length === 1 ? '' : ' per input'}, or tensors by name (${names}).`,
      );
    }
    if (Array.isArray(inputs) && declared.length > 1 && inputs.every((t) => t instanceof tf.Tensor)) {
      throw new DynnError(
        'INVALID_INPUT',
        `The inputs are a JavaScript array of tensors; pass them by name: { ${declared.map((d) => `${d.name}: ...`).join(', ')} }.`,
      );
    }
    const proto = typeof inputs === 'object' ? Object.getPrototypeOf(inputs) : undefined;
    if (proto !== Object.prototype && proto !== null) {
      throw notATensor(
        declared.length === 1 ? `Input '${declared[0]!.name}'` : `The inputs (${names})`,
        inputs,
      );
    }
  }
  const given: Record<string, tf.Tensor> =
    inputs instanceof tf.Tensor
      ? declared.length === 1
        ? { [declared[0]!.name]: inputs }
        : (() => {
            throw new DynnError(
              'INVALID_INPUT',
              `The graph has ${declared.length} inputs (${names}); pass them by name.`,
            );
          })()
      : inputs;
  const feeds = new Map<string, tf.Tensor>();
  let batchSize: number | undefined;
  let batchFrom = '';
  for (const info of declared) {
    const t: unknown = given[info.name];
    if (t === undefined || t === null) {
      const other = Object.keys(given);
      throw new DynnError(
        'INVALID_INPUT',
        `Missing input '${info.name}' (${info.dtype}[${info.shape}])` +
          (other.length > 0 ? `; the inputs given are named ${other.join(', ')}.` : '.'),
      );
    }
    if (!(t instanceof tf.Tensor)) throw notATensor(`Input '${info.name}'`, t);
    if (t.isDisposed) throw new DynnError('INVALID_INPUT', `Input '${info.name}' was already disposed.`);
    if (t.dtype !== info.dtype) {
      throw new DynnError(
        'INVALID_INPUT',
        `Input '${info.name}' is ${t.dtype} but the graph expects ${info.dtype}; cast it with tf.cast(x, '${info.dtype}').`,
      );
    }
    const shapeOk =
      t.rank === info.shape.length && info.shape.every((d, i) => typeof d !== 'number' || d === t.shape[i]);
    if (!shapeOk) {
      throw new DynnError(
        'INVALID_INPUT',
        `Input '${info.name}' has shape [${t.shape}] but the graph expects [${info.shape}].`,
      );
    }
    if (info.shape[0] === BATCH) {
      if (batchSize !== undefined && t.shape[0] !== batchSize) {
        throw new DynnError(
          'INVALID_INPUT',
          `Input '${info.name}' has ${t.shape[0]} rows; other inputs have ${batchSize}.`,
        );
      }
      batchSize = t.shape[0]!;
      batchFrom = info.name;
    }
    feeds.set(info.name, t);
  }
  for (const name of Object.keys(given)) {
    if (!feeds.has(name)) {
      throw new DynnError('INVALID_INPUT', `Unknown input '${name}'. The graph's inputs are: ${names}.`);
    }
  }
  if (batchSize === 0) {
    throw new DynnError(
      'INVALID_INPUT',
      `Input '${batchFrom}' is an empty batch (shape [${feeds.get(batchFrom)!.shape}]): give at least one row, ` +
        'or skip the call when there is nothing to run.',
    );
  }
  if (checkValues) {
    for (const [name, t] of feeds) {
      if (t.dtype !== 'float32') continue;
      const index = await nonFiniteIndex(t);
      if (index < 0) continue;
      const value = (await t.data())[index];
      throw new DynnError(
        'INVALID_INPUT',
        `Input '${name}' contains NaN or infinite values: ${value} at ${elementAt(index, t.shape)}. Clean ` +
          'the data, or pass checkInputs: false to skip this check.',
      );
    }
  }
  return { feeds, batchSize: batchSize ?? 1 };
}

/** The graph outputs a run returns, checked against the graph. */
function requestedOutputs(model: Model, requested: readonly string[] | undefined): string[] {
  const all = model.graph.outputs.map((o) => o.name);
  if (requested === undefined) return all;
  for (const name of requested) {
    if (!all.includes(name)) {
      throw new DynnError('INVALID_OPTION', `No graph output '${name}'. Outputs: ${all.join(', ')}.`);
    }
  }
  return [...new Set(requested)];
}

/**
 * Which nodes the wanted outputs depend on, and the index of each value's last reader among them
 * (cached per model and output set).
 */
function plan(model: Model, wanted: readonly string[]): { needed: boolean[]; last: Map<string, number> } {
  let cache = planCache.get(model);
  if (cache === undefined) {
    cache = new Map();
    planCache.set(model, cache);
  }
  const key = wanted.join('\u0000');
  let cached = cache.get(key);
  if (cached === undefined) {
    cached = computePlan(model, wanted);
    cache.set(key, cached);
  }
  return cached;
}

function computePlan(
  model: Model,
  wanted: readonly string[],
): { needed: boolean[]; last: Map<string, number> } {
  const nodes = model.graph.nodes;
  const neededValues = new Set(wanted);
  const needed = new Array<boolean>(nodes.length).fill(false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]!;
    if (!node.outputs.some((o) => neededValues.has(o))) continue;
    needed[i] = true;
    for (const input of node.inputs) neededValues.add(input);
  }
  const last = new Map<string, number>();
  nodes.forEach((node, i) => {
    if (needed[i]) for (const name of node.inputs) last.set(name, i);
  });
  for (const name of wanted) last.set(name, Number.POSITIVE_INFINITY);
  return { needed, last };
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

function validateRetirement(node: GraphNode, model: Model, result: OpResult, active: Int32Array): Int32Array {
  const retire = result.retire!;
  const rows = retire.rows;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (!(r >= 0 && r < active.length) || (i > 0 && r <= rows[i - 1]!)) {
      throw new DynnError(
        'INVALID_GRAPH',
        `Node '${node.name}' (${node.op}) retired row ${r}; retired rows must be ascending positions below ${active.length}.`,
        { node: node.name, op: node.op },
      );
    }
  }
  for (const [name, t] of Object.entries(retire.outputs)) {
    if (!model.graph.outputs.some((o) => o.name === name)) {
      throw new DynnError(
        'INVALID_GRAPH',
        `Node '${node.name}' retired rows into unknown graph output '${name}'.`,
        {
          node: node.name,
          op: node.op,
        },
      );
    }
    if (t.shape[0] !== rows.length) {
      throw new DynnError(
        'SHAPE_MISMATCH',
        `Node '${node.name}' gave ${t.shape[0]} rows of output '${name}' for ${rows.length} retired rows.`,
        { node: node.name, op: node.op },
      );
    }
  }
  return Int32Array.from(rows, (r) => active[r]!);
}

/** Concatenates the row pieces of one output and puts rows back in input order. */
async function assemble(name: string, pieces: Piece[], batchSize: number): Promise<tf.Tensor> {
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
    throw new DynnError(
      'INVALID_GRAPH',
      `Row ${missing} of output '${name}' was retired by a node that gave no value for '${name}'.`,
    );
  }
  const joined = pieces.length === 1 ? pieces[0]!.tensor : tf.concat(pieces.map((p) => p.tensor));
  const ordered = await takeRows(joined, order);
  if (joined !== pieces[0]!.tensor) joined.dispose();
  tf.dispose(pieces.map((p) => p.tensor));
  return ordered;
}

function applyEffects(model: Model, node: GraphNode, effects: OpSideEffects): void {
  const { state } = nodeTensors(model, node);
  for (const [local, value] of effects.stateUpdates) {
    (state[local] as tf.Variable).assign(value);
    value.dispose();
  }
}

/**
 * Runs a model on a batch, node by node. Rows an op retires are removed from every later node's
 * inputs (gathered once, on first use), so their compute is really saved; outputs come back in
 * the original row order. See docs/architecture.md.
 */
export async function execute(model: Model, request: RunRequest): Promise<RunResult> {
  const { feeds, batchSize } = await prepareFeeds(model, request.inputs, request.checkInputs ?? true);
  const training = request.training ?? false;
  const wantReport = request.report ?? true;
  const seed = request.seed ?? 0;
  const wanted = requestedOutputs(model, request.outputs);
  const { needed, last } = plan(model, wanted);
  const slots = new Map<string, Slot>();
  const holders = new Map<tf.Tensor, number>();
  // Tensors the caller or the model owns are never disposed here, even if an op passes them on.
  const external = new Set<tf.Tensor>([...feeds.values(), ...model.params.values(), ...model.state.values()]);
  const owned = (t: tf.Tensor) => !external.has(t);
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
  const all = Int32Array.from({ length: batchSize }, (_, i) => i);
  for (const [name, t] of feeds) {
    const info = model.values.get(name)!;
    hold(name, info.shape[0] === BATCH ? { tensor: t, rows: all } : { tensor: t });
  }
  let active = all;
  const pieces = new Map<string, Piece[]>();
  const servedBy: Record<string, string[]> = {};
  for (const name of wanted) servedBy[name] = new Array<string>(batchSize).fill('');
  const nodes: NodeReport[] = [];
  const losses: AuxLoss[] = [];
  let fullFlops = 0;

  const aligned = async (name: string): Promise<tf.Tensor> => {
    const slot = slots.get(name)!;
    if (slot.rows === undefined || slot.rows === active) return slot.tensor;
    const taken = await takeRows(slot.tensor, positionsOf(slot.rows, active));
    release(name);
    hold(name, { tensor: taken, rows: active });
    return taken;
  };

  try {
    for (const [index, node] of model.graph.nodes.entries()) {
      if (!needed[index]) continue;
      const def = model.runtime.op(node.op, node.name);
      const attrs = nodeAttrs(model, node);
      const fullShape = (name: string) =>
        model.values.get(name)!.shape.map((d) => (d === BATCH ? batchSize : typeof d === 'number' ? d : 1));
      if (wantReport) fullFlops += def.flops(attrs, node.inputs.map(fullShape), node.outputs.map(fullShape));
      if (active.length === 0) {
        nodes.push({ name: node.name, op: node.op, rows: 0, flops: 0, stats: {} });
        continue;
      }
      const inputs: tf.Tensor[] = [];
      for (const name of node.inputs) inputs.push(await aligned(name));
      const { params, state } = nodeTensors(model, node);
      const { context, effects } = createOpContext({
        node,
        attrs,
        params,
        state,
        training,
        options: request.options ?? {},
        rows: { batchSize, indices: active },
        seed,
      });
      let result: tf.Tensor[] | OpResult;
      try {
        result = await def.forward(context, inputs);
      } catch (error) {
        if (error instanceof DynnError) throw error;
        throw new DynnError(
          'INVALID_INPUT',
          `Node '${node.name}' (${node.op}) failed: ${(error as Error).message}`,
          {
            node: node.name,
            op: node.op,
          },
        );
      }
      const outputs = Array.isArray(result) ? result : result.outputs;
      const rowsBefore = active;
      outputs.forEach((t, i) => {
        const name = node.outputs[i]!;
        const batchMajor = model.values.get(name)!.shape[0] === BATCH;
        hold(name, batchMajor ? { tensor: t, rows: rowsBefore } : { tensor: t });
        if (wanted.includes(name)) {
          // A requested output is kept for the rows it was computed on now, before any of them
          // retire at a later node. Tensors the caller or the model owns are cloned, never handed
          // out; the piece's hold keeps the executor from disposing the tensor.
          const tensor = owned(t) ? t : t.clone();
          holders.set(tensor, (holders.get(tensor) ?? 0) + 1);
          const rows = batchMajor ? rowsBefore : all;
          const list = pieces.get(name) ?? [];
          list.push({ rows, tensor });
          pieces.set(name, list);
          for (const row of rows) servedBy[name]![row] = node.name;
        }
      });
      if (!Array.isArray(result) && result.retire !== undefined) {
        const retired = validateRetirement(node, model, result, active);
        for (const [name, t] of Object.entries(result.retire.outputs)) {
          if (!wanted.includes(name)) {
            t.dispose();
            continue;
          }
          const list = pieces.get(name) ?? [];
          list.push({ rows: retired, tensor: t });
          pieces.set(name, list);
          for (const row of retired) servedBy[name]![row] = node.name;
        }
        const gone = new Set(retired);
        active = active.filter((row) => !gone.has(row));
      }
      losses.push(...effects.losses);
      applyEffects(model, node, effects);
      if (wantReport) {
        const shapes = (ts: tf.Tensor[]) => ts.map((t) => t.shape);
        nodes.push({
          name: node.name,
          op: node.op,
          rows: rowsBefore.length,
          flops: def.flops(attrs, shapes(inputs), shapes(outputs)),
          stats: effects.records,
        });
      }
      for (const name of node.inputs) if (last.get(name) === index) release(name);
    }

    const results: Record<string, tf.Tensor> = {};
    for (const output of model.graph.outputs.filter((o) => wanted.includes(o.name))) {
      const list = pieces.get(output.name) ?? [];
      pieces.delete(output.name);
      results[output.name] = await assemble(output.name, list, batchSize);
    }
    const report: ComputeReport | undefined = wantReport
      ? { batchSize, flops: nodes.reduce((s, n) => s + n.flops, 0), fullFlops, nodes, servedBy }
      : undefined;
    return report ? { outputs: results, losses, report } : { outputs: results, losses };
  } finally {
    for (const name of [...slots.keys()]) release(name);
    for (const list of pieces.values()) tf.dispose(list.map((p) => p.tensor));
  }
}

/** How {@link forwardForTraining} runs. */
export interface TapedForwardOptions {
  /** Parameters being trained (default all): tells ops which inputs need gradients. */
  trainable?: ReadonlySet<tf.Variable>;
  /**
   * Run ops in training mode (default true). False keeps inference behaviour (no dropout, moving
   * statistics) under the tape, for gradients with respect to the inputs (adversarial attacks).
   */
  training?: boolean;
  /** Whether gradients must flow into the graph inputs themselves (default false). */
  inputGradients?: boolean;
}

/** What {@link forwardForTraining} returns: outputs and side effects, all inside the caller's tape. */
export interface TrainingForward {
  /** Every graph output, for every row. */
  outputs: Record<string, tf.Tensor>;
  /** Auxiliary losses the ops added. */
  losses: AuxLoss[];
  /** New values for state variables, kept out of the caller's tidy until applied. */
  stateUpdates: Map<tf.Variable, tf.Tensor>;
}

/**
 * Runs every node on every row, synchronously, in training mode: the form gradients need
 * (`tf.variableGrads` tapes synchronously). Ops must not be async or retire rows here.
 * Intermediates are left to the caller's `tf.tidy`; state updates are `tf.keep`-ed.
 */
export function forwardForTraining(
  model: Model,
  feeds: ReadonlyMap<string, tf.Tensor>,
  options: RunOptions,
  seed: number,
  { trainable, training = true, inputGradients = false }: TapedForwardOptions = {},
): TrainingForward {
  const values = new Map<string, tf.Tensor>(feeds);
  const losses: AuxLoss[] = [];
  const stateUpdates = new Map<tf.Variable, tf.Tensor>();
  const batchSize = feeds.values().next().value?.shape[0] ?? 1;
  const rows = { batchSize, indices: Int32Array.from({ length: batchSize }, (_, i) => i) };
  // A value needs a gradient when some trainable parameter influences it.
  const influenced = new Set<string>(inputGradients ? feeds.keys() : []);
  for (const node of model.graph.nodes) {
    const def = model.runtime.op(node.op, node.name);
    const { params, state } = nodeTensors(model, node);
    const inputGradients = node.inputs.map((name) => influenced.has(name));
    const ownsTrainable = Object.values(params).some((p) => trainable?.has(p as tf.Variable) ?? true);
    if (ownsTrainable || inputGradients.some(Boolean)) for (const name of node.outputs) influenced.add(name);
    // A frozen node with state (batch norm) runs in inference mode, as a frozen Keras layer does:
    // it normalises with its moving statistics and leaves them as they are (retrofit, fine-tuning).
    const frozenWithState = Object.keys(params).length > 0 && !ownsTrainable && Object.keys(state).length > 0;
    const { context, effects } = createOpContext({
      inputGradients,
      node,
      attrs: nodeAttrs(model, node),
      params,
      state,
      training: training && !frozenWithState,
      options,
      rows,
      seed,
    });
    const result = def.forward(
      context,
      node.inputs.map((name) => values.get(name)!),
    );
    if (result instanceof Promise || (!Array.isArray(result) && result.retire !== undefined)) {
      throw new DynnError(
        'INVALID_OPTION',
        `Node '${node.name}' (${node.op}) is asynchronous or retires rows in training; in training every row must run synchronously.`,
        { node: node.name, op: node.op },
      );
    }
    const outputs = Array.isArray(result) ? result : result.outputs;
    outputs.forEach((t, i) => {
      values.set(node.outputs[i]!, t);
    });
    losses.push(...effects.losses);
    for (const [local, value] of effects.stateUpdates)
      stateUpdates.set(state[local] as tf.Variable, tf.keep(value));
  }
  const outputs: Record<string, tf.Tensor> = {};
  for (const output of model.graph.outputs) outputs[output.name] = values.get(output.name)!;
  return { outputs, losses, stateUpdates };
}
