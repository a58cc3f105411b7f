/**
 * The graph IR: plain, JSON-serializable data. Nothing here holds tensors or functions, so a
 * graph can be saved, diffed, validated and transformed by pure passes.
 */

/** Element types a value may have. */
export type DType = 'float32' | 'int32' | 'bool';

/** One dimension of a shape: a number, or a symbolic name such as `'batch'`. */
export type Dim = number | string;

/** The symbolic name of the batch dimension. Values whose first dimension is it carry row sets. */
export const BATCH = 'batch';

/** A named value of the graph (input, output or intermediate) with its dtype and shape. */
export interface ValueInfo {
  name: string;
  dtype: DType;
  shape: Dim[];
}

/** An attribute value: JSON data, or a nested graph (for ops whose attribute is a sub-graph). */
export type AttrValue =
  | number
  | string
  | boolean
  | null
  | number[]
  | string[]
  | Graph
  | { [key: string]: AttrValue }
  | AttrValue[];

/** Attributes of a node, by name. */
export type Attrs = Record<string, AttrValue>;

/** One operation applied to named values. `op` is `domain.Name`, e.g. `core.Dense`. */
export interface GraphNode {
  name: string;
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Attrs;
}

/** How a tensor is initialised when a model is created. */
export type Initializer =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'constant'; value: number }
  | { kind: 'glorotUniform'; fanIn: number; fanOut: number }
  | { kind: 'heNormal'; fanIn: number }
  | { kind: 'uniform'; min: number; max: number }
  | { kind: 'normal'; mean: number; std: number }
  /** Parts initialised separately and joined along the last axis (e.g. an LSTM's forget-gate bias of ones). */
  | { kind: 'concat'; parts: { size: number; init: Initializer }[] };

/**
 * A tensor held by the model: trainable parameters (`params`) or non-trainable state (`state`:
 * running statistics, masks, centroids, memories). Named `<node>/<local name>`.
 */
export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  init: Initializer;
}

/** A whole graph. Nodes are in topological order. */
export interface Graph {
  specVersion: 1;
  /** Op-set version used per domain, e.g. `{ core: 1, 'early-exit': 1 }`. */
  opsets: Record<string, number>;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: GraphNode[];
  params: TensorInfo[];
  state: TensorInfo[];
}

/** The current IR spec version. */
export const SPEC_VERSION = 1 as const;

/** Splits `domain.Name` into its domain and name. */
export function splitOpType(op: string): { domain: string; name: string } {
  const dot = op.lastIndexOf('.');
  return dot <= 0 ? { domain: '', name: op } : { domain: op.slice(0, dot), name: op.slice(dot + 1) };
}
