import * as tf from '@tensorflow/tfjs-core';
import type { DerivedTensors } from './derived-tensors.js';
import type { Attrs, GraphNode } from './ir.js';
import type {
  ComputeRecord,
  OpContext,
  RowSet,
  RunGraphOptions,
  RunOptions,
  SessionStateSpec,
  SessionValue,
} from './op.js';
import { createRng, type Rng, seedFor } from './random.js';
import { sessionTensors } from './session.js';

/** An auxiliary loss added by a node during a run. */
export interface AuxLoss {
  /** The node that added it. */
  node: string;
  /** Its name within the node (`aux` unless the op named it). */
  name: string;
  /** The scalar loss. */
  value: tf.Scalar;
}

/** What a node asked for besides its outputs: losses, state updates, report statistics. */
export interface OpSideEffects {
  /** Auxiliary losses added with `addLoss`. */
  losses: AuxLoss[];
  /** New state values by local name (owned by the collector until applied or disposed). */
  stateUpdates: Map<string, tf.Tensor>;
  /** Statistics recorded with `record`, by key. */
  records: Record<string, unknown>;
  /** Data-dependent compute added with `addCompute`. */
  compute: Required<ComputeRecord>;
  /** Session values written with `session.write`, by local name (owned until applied or disposed). */
  sessionWrites: Map<string, SessionValue>;
  /** Tensors `derive` made for this call alone (no cache): freed once the forward returned. */
  transient: tf.Tensor[];
}

/** Everything needed to build the context an op's forward sees. */
export interface OpContextInit<A extends Attrs> {
  /** The node being run. */
  node: GraphNode;
  /** Its attributes, defaults filled in. */
  attrs: A;
  /** Its parameters by local name. */
  params: Record<string, tf.Tensor>;
  /** Its state tensors by local name. */
  state: Record<string, tf.Tensor>;
  /** Whether the op runs in training mode. */
  training: boolean;
  /** The run options. */
  options: RunOptions;
  /** The rows of the original batch this call computes. */
  rows: RowSet;
  /** Per input, whether it needs a gradient (default: none). */
  inputGradients?: readonly boolean[];
  /** Seed of the run; each node derives its own stream from it and its name. */
  seed: number;
  /** The decision the op's `decide` made for this call, if any. */
  decision?: unknown;
  /**
   * The session values the node stored in earlier runs, by local name, and what it may store
   * (absent: the run has no session).
   */
  session?: {
    /** The value stored under a local name, or undefined. */
    read(name: string): SessionValue | undefined;
    /** What the op declares it keeps. */
    specs: readonly SessionStateSpec[];
  };
  /** The model's cache of derived tensors (inference runs); absent: each `derive` makes its tensor for the call. */
  derived?: DerivedTensors;
  /** Runs one of the node's sub-graphs (the interpreter provides it; absent: the op has none to run). */
  runGraph?: (attr: string, inputs: readonly tf.Tensor[], options?: RunGraphOptions) => tf.Tensor[];
}

/**
 * Builds the context a node's forward runs with, and the collector of what it asks for. The
 * executor uses it for every node; op tests use it (through `@dynn/testing`) to call an op alone.
 */
export function createOpContext<A extends Attrs>(
  init: OpContextInit<A>,
): {
  /** The context to pass to the op's forward. */
  context: OpContext<A>;
  /** What the forward asked for through the context, filled in as it runs. */
  effects: OpSideEffects;
} {
  const effects: OpSideEffects = {
    losses: [],
    stateUpdates: new Map(),
    records: {},
    compute: { flops: 0, bytes: 0 },
    sessionWrites: new Map(),
    transient: [],
  };
  const session = init.session;
  let rng: Rng | undefined;
  const context: OpContext<A> = {
    node: init.node,
    attrs: init.attrs,
    params: init.params,
    state: init.state,
    training: init.training,
    options: init.options,
    rows: init.rows,
    inputGradients: init.inputGradients ?? init.node.inputs.map(() => false),
    rng() {
      rng ??= createRng(seedFor(init.seed, init.node.name));
      return rng;
    },
    addLoss(value, name = 'aux') {
      effects.losses.push({ node: init.node.name, name, value });
    },
    updateState(name, value) {
      if (!Object.hasOwn(init.state, name)) {
        throw new Error(`node '${init.node.name}' has no state '${name}'`);
      }
      effects.stateUpdates.get(name)?.dispose();
      effects.stateUpdates.set(name, value);
    },
    record(key, value) {
      effects.records[key] = value;
    },
    addCompute({ flops = 0, bytes = 0 }) {
      effects.compute.flops += flops;
      effects.compute.bytes += bytes;
    },
    derive(key, sources, make) {
      if (init.derived !== undefined) return init.derived.get(key, sources, make);
      const made = make();
      effects.transient.push(made);
      return made;
    },
    decision: init.decision,
    session:
      session === undefined
        ? undefined
        : {
            read: (name) => session.read(name),
            write(name, value) {
              checkSessionWrite(init.node.name, session.specs, name, value);
              tf.dispose(sessionTensors([effects.sessionWrites.get(name)]));
              effects.sessionWrites.set(name, value);
            },
          },
    runGraph(attr, inputs, options) {
      if (init.runGraph === undefined) {
        throw new Error(`node '${init.node.name}' has no sub-graph runner: run it through a model`);
      }
      return init.runGraph(attr, inputs, options);
    },
  };
  return { context, effects };
}

/** Throws, naming the node, when a session write is not what the op declares. */
function checkSessionWrite(
  node: string,
  specs: readonly SessionStateSpec[],
  name: string,
  value: SessionValue,
): void {
  const spec = specs.find((s) => s.name === name);
  if (spec === undefined) {
    throw new Error(
      `node '${node}' writes session value '${name}', which its op does not declare (sessionState): ${specs.map((s) => s.name).join(', ') || 'none'}`,
    );
  }
  if (spec.kind === 'number') {
    if (typeof value !== 'number')
      throw new Error(`node '${node}': session value '${name}' must be a number`);
    return;
  }
  if (typeof value === 'number') throw new Error(`node '${node}': session value '${name}' must be a tensor`);
  const fits =
    value.dtype === spec.dtype &&
    value.rank === spec.shape.length &&
    spec.shape.every((d, i) => typeof d !== 'number' || d === value.shape[i]);
  if (!fits) {
    throw new Error(
      `node '${node}': session value '${name}' is ${value.dtype}[${value.shape.join(', ')}], but the op declares ${spec.dtype}[${spec.shape.join(', ')}]`,
    );
  }
}
