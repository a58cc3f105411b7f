import * as tf from '@tensorflow/tfjs-core';
import { DynnError, notATensor } from './errors.js';
import {
  type Decisions,
  driveAsync,
  driveSync,
  type Frame,
  type NodeDoneEvent,
  type NodeEvent,
  type NodeHook,
  type RunMode,
  runScope,
  type ScopeResult,
  trainingDeciders,
} from './interpreter.js';
import { BATCH } from './ir.js';
import type { Model } from './model.js';
import type { RunOptions, SessionValue } from './op.js';
import type { AuxLoss } from './op-context.js';
import { type Session, sessionTensors } from './session.js';
import { elementAt, firstNonFinite } from './validate.js';

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
  /** Called before and after every node, sub-graph nodes included (tracing, profiling, tests). */
  hooks?: readonly NodeHook[];
  /**
   * The session the run belongs to ({@link Model.session}): ops read what earlier runs of it
   * stored and store what the next run reads. {@link Session.run} sets it.
   */
  session?: Session;
}

/** What one node computed during a run. */
export interface NodeReport {
  /** The node's name; its full path inside a sub-graph (`scan/body/cell`). */
  name: string;
  /** The node's op type. */
  op: string;
  /** The enclosing node inside a sub-graph; absent at the top. */
  parent?: string;
  /** Times it ran: 1 at the top; a sub-graph node counts every call (a loop body, per step). */
  calls: number;
  /** Rows of the batch the node computed on (fewer than the batch once rows retired), summed over calls. */
  rows: number;
  /** Floating-point operations it executed on those rows, data-dependent work included. */
  flops: number;
  /** Bytes it reported moving (gathers, scatters, dispatch copies). */
  bytes: number;
  /** Statistics the op recorded (`ctx.record`): exit counts, expert loads... (its last call's). */
  stats: Record<string, unknown>;
}

/** What a run actually computed: the measured side of every claim of saved compute. */
export interface ComputeReport {
  /** Rows given to the run. */
  batchSize: number;
  /** FLOPs executed, summed over nodes. */
  flops: number;
  /** FLOPs had every row gone through every node, every dimension at its actual size. */
  fullFlops: number;
  /** One entry per node that ran, in the order they started; sub-graph nodes once each, summed over calls. */
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

/**
 * The flat index of the first NaN or infinite element, or -1 when every element is finite. On
 * cpu/wasm the data already lives on the host and a JS scan is cheapest; on GPU backends the check
 * runs on the device and reads back one flag (the data itself only when something is wrong).
 */
async function nonFiniteIndex(t: tf.Tensor): Promise<number> {
  // GPU backends cannot allocate a buffer for an empty tensor's reduction.
  if (t.size === 0) return -1;
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
 * The compute report, built by a {@link NodeHook}: one entry per top node, one per sub-graph node
 * summed over its calls.
 */
export function reportHook(batchSize: number): {
  /** The hook to pass to the run. */
  hook: NodeHook;
  /** The report once the run ended. */
  finish(servedBy: Record<string, string[]>): ComputeReport;
} {
  const nodes: NodeReport[] = [];
  const byPath = new Map<string, NodeReport>();
  let fullFlops = 0;
  // An entry is made when a node starts, so a sub-graph op comes before the nodes it runs.
  const entryFor = (event: NodeEvent): NodeReport => {
    let entry = byPath.get(event.path);
    if (entry === undefined) {
      entry = {
        name: event.path,
        op: event.node.op,
        ...(event.parent === undefined ? {} : { parent: event.parent }),
        calls: 0,
        rows: 0,
        flops: 0,
        bytes: 0,
        stats: {},
      };
      byPath.set(event.path, entry);
      nodes.push(entry);
    }
    return entry;
  };
  const hook: NodeHook = {
    beforeNode: entryFor,
    afterNode(event: NodeDoneEvent) {
      fullFlops += event.fullFlops ?? 0;
      const entry = entryFor(event);
      entry.calls += 1;
      entry.rows += event.rows;
      entry.flops += event.flops;
      entry.bytes += event.bytes;
      entry.stats = { ...event.records };
    },
  };
  return {
    hook,
    finish: (servedBy) => ({
      batchSize,
      flops: nodes.reduce((s, n) => s + n.flops, 0),
      fullFlops,
      nodes,
      servedBy,
    }),
  };
}

function newFrame(
  model: Model,
  mode: RunMode,
  training: boolean,
  options: RunOptions,
  seed: number,
  hooks: readonly NodeHook[],
): Frame {
  return {
    mode,
    training,
    options,
    seed,
    params: model.params,
    state: model.state,
    inputGradients: false,
    hooks,
    losses: [],
    stateUpdates: new Map(),
    decisions: new Map(),
    // Only inference keeps derived tensors: in training the weights change every step.
    ...(mode === 'infer' ? { derived: model.derived } : {}),
  };
}

/**
 * Runs a model on a batch through the interpreter. Rows an op retires are removed from every
 * later node's inputs (gathered once, on first use), so their compute is really saved; outputs
 * come back in the original row order. State updates apply once the run ends. See
 * docs/architecture.md.
 */
export async function execute(model: Model, request: RunRequest): Promise<RunResult> {
  const { feeds, batchSize } = await prepareFeeds(model, request.inputs, request.checkInputs ?? true);
  const wanted = requestedOutputs(model, request.outputs);
  const report = (request.report ?? true) ? reportHook(batchSize) : undefined;
  const hooks = [...(request.hooks ?? []), ...(report ? [report.hook] : [])];
  const frame = newFrame(
    model,
    'infer',
    request.training ?? false,
    request.options ?? {},
    request.seed ?? 0,
    hooks,
  );
  const session = request.session;
  if (session !== undefined) {
    if (session.model !== model) {
      throw new DynnError(
        'INVALID_OPTION',
        'This session belongs to another model: run it with its own model.',
      );
    }
    frame.session = { values: session.values, writes: new Map() };
  }
  let result: ScopeResult;
  try {
    result = await driveAsync(runScope(frame, model.compiled, feeds, wanted));
  } catch (error) {
    tf.dispose([
      ...frame.losses.map((l) => l.value),
      ...frame.stateUpdates.values(),
      ...sessionTensors(frame.session?.writes.values() ?? []),
    ]);
    throw error;
  }
  applyStateUpdates(frame.stateUpdates);
  if (session !== undefined) session.commit(frame.session!.writes);
  const outputs = Object.fromEntries(result.outputs);
  return report
    ? { outputs, losses: frame.losses, report: report.finish(result.servedBy) }
    : { outputs, losses: frame.losses };
}

/** Assigns collected state updates to their variables and frees the updates. */
export function applyStateUpdates(updates: ReadonlyMap<tf.Variable, tf.Tensor>): void {
  for (const [variable, value] of updates) {
    variable.assign(value);
    value.dispose();
  }
}

/** How the steps of a training step run ({@link decideForTraining}, {@link forwardForTraining}). */
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
  /** Graph outputs the step needs (default all): nodes none of them depends on are skipped. */
  outputs?: readonly string[];
  /** Called before and after every node. */
  hooks?: readonly NodeHook[];
  /** Decisions from {@link decideForTraining}, needed when some op decides in training. */
  decisions?: Decisions;
  /**
   * Session values the ops read (by `<node>/<name>`): in training over windows, what the previous
   * window wrote, on the same tape. What the ops write comes back as `sessionWrites`.
   */
  session?: ReadonlyMap<string, SessionValue>;
}

/** What {@link forwardForTraining} returns: outputs and side effects, all inside the caller's tape. */
export interface TrainingForward {
  /** The requested graph outputs (default all), for every row. */
  outputs: Record<string, tf.Tensor>;
  /** Auxiliary losses the ops added. */
  losses: AuxLoss[];
  /** New values for state variables, kept out of the caller's tidy until applied. */
  stateUpdates: Map<tf.Variable, tf.Tensor>;
  /** Session values the ops wrote (by `<node>/<name>`), kept out of the caller's tidy; empty without a session. */
  sessionWrites: Map<string, SessionValue>;
}

/**
 * The decide step of a training step: runs the graph untaped, in training mode, up to its last
 * op that decides in training (`decidesInTraining`), and returns their decisions for
 * {@link forwardForTraining}. Returns an empty map, computing nothing, when no op decides in
 * training. Feeds must be checked already ({@link Trainer.step} does).
 */
export async function decideForTraining(
  model: Model,
  feeds: ReadonlyMap<string, tf.Tensor>,
  options: RunOptions,
  seed: number,
  {
    trainable,
    training = true,
    session,
  }: Pick<TapedForwardOptions, 'trainable' | 'training' | 'session'> = {},
): Promise<Decisions> {
  const frame = newFrame(model, 'decide', training, options, seed, []);
  if (trainable) frame.trainable = trainable;
  if (session) frame.session = { values: session, writes: new Map() };
  if (trainingDeciders(model.compiled).length === 0) return frame.decisions;
  try {
    await driveAsync(runScope(frame, model.compiled, feeds, []));
  } finally {
    // The decide step only decides: its losses and state updates belong to the taped step.
    tf.dispose([...frame.losses.map((l) => l.value), ...frame.stateUpdates.values()]);
  }
  return frame.decisions;
}

/**
 * The taped step of a training step: runs the graph synchronously on every row, in training mode,
 * inside the caller's gradient tape (`tf.variableGrads` tapes synchronously), replaying the
 * decisions of {@link decideForTraining}. Intermediates are left to the caller's `tf.tidy`;
 * state updates are `tf.keep`-ed for the caller to apply after the optimizer step.
 */
export function forwardForTraining(
  model: Model,
  feeds: ReadonlyMap<string, tf.Tensor>,
  options: RunOptions,
  seed: number,
  {
    trainable,
    training = true,
    inputGradients = false,
    outputs,
    hooks = [],
    decisions,
    session,
  }: TapedForwardOptions = {},
): TrainingForward {
  const frame = newFrame(model, 'taped', training, options, seed, hooks);
  frame.inputGradients = inputGradients;
  if (trainable) frame.trainable = trainable;
  if (decisions) frame.decisions = decisions;
  if (session) frame.session = { values: session, writes: new Map() };
  const wanted = requestedOutputs(model, outputs);
  let result: ScopeResult;
  try {
    result = driveSync(runScope(frame, model.compiled, feeds, wanted), 'The graph');
  } catch (error) {
    tf.dispose([...frame.stateUpdates.values(), ...sessionTensors(frame.session?.writes.values() ?? [])]);
    throw error;
  }
  return {
    outputs: Object.fromEntries(result.outputs),
    losses: frame.losses,
    stateUpdates: frame.stateUpdates,
    sessionWrites: frame.session?.writes ?? new Map(),
  };
}
