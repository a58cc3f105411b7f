import type * as tf from '@tensorflow/tfjs-core';
import type { Attrs, GraphNode } from './ir.js';
import type { OpContext, RowSet, RunOptions } from './op.js';
import { createRng, type Rng, seedFor } from './random.js';

/** An auxiliary loss added by a node during a run. */
export interface AuxLoss {
  node: string;
  name: string;
  value: tf.Scalar;
}

/** What a node asked for besides its outputs: losses, state updates, report statistics. */
export interface OpSideEffects {
  losses: AuxLoss[];
  /** New state values by local name (owned by the collector until applied or disposed). */
  stateUpdates: Map<string, tf.Tensor>;
  records: Record<string, unknown>;
}

/** Everything needed to build the context an op's forward sees. */
export interface OpContextInit<A extends Attrs> {
  node: GraphNode;
  attrs: A;
  params: Record<string, tf.Tensor>;
  state: Record<string, tf.Tensor>;
  training: boolean;
  options: RunOptions;
  rows: RowSet;
  /** Per input, whether it needs a gradient (default: none). */
  inputGradients?: readonly boolean[];
  /** Seed of the run; each node derives its own stream from it and its name. */
  seed: number;
}

/**
 * Builds the context a node's forward runs with, and the collector of what it asks for. The
 * executor uses it for every node; op tests use it (through `@dynn/testing`) to call an op alone.
 */
export function createOpContext<A extends Attrs>(
  init: OpContextInit<A>,
): { context: OpContext<A>; effects: OpSideEffects } {
  const effects: OpSideEffects = { losses: [], stateUpdates: new Map(), records: {} };
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
  };
  return { context, effects };
}
