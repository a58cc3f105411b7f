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
  /** Unique name within the graph; nodes read and write values by it. */
  name: string;
  /** Element type. */
  dtype: DType;
  /** Dimensions, numbers or symbolic names; a first dimension `'batch'` makes the value batch-major. */
  shape: Dim[];
}

/** An attribute value: JSON data, or nested graphs (for ops whose attribute is a sub-graph). */
export type AttrValue =
  | number
  | string
  | boolean
  | null
  | number[]
  | string[]
  | SubGraph
  | SubGraph[]
  | { [key: string]: AttrValue }
  | AttrValue[];

/** Attributes of a node, by name. */
export type Attrs = Record<string, AttrValue>;

/** One operation applied to named values. `op` is `domain.Name`, e.g. `core.Dense`. */
export interface GraphNode {
  /** Unique node name; the node's parameters and state are named `<name>/<local name>`. */
  name: string;
  /** Op type, `domain.Name`. */
  op: string;
  /** Names of the values the node reads, in the op's input order. */
  inputs: string[];
  /** Names of the values the node writes, in the op's output order. */
  outputs: string[];
  /** Attribute values; omitted ones take the op's defaults. */
  attrs: Attrs;
}

/** How a tensor is initialised when a model is created. */
export type Initializer =
  | {
      /** Every element 0. */
      kind: 'zeros';
    }
  | {
      /** Every element 1. */
      kind: 'ones';
    }
  | {
      /** Every element `value`. */
      kind: 'constant';
      /** The value of every element. */
      value: number;
    }
  | {
      /** Uniform in ±sqrt(6 / (fanIn + fanOut)) (Glorot & Bengio). */
      kind: 'glorotUniform';
      /** Inputs feeding each unit. */
      fanIn: number;
      /** Units each input feeds. */
      fanOut: number;
    }
  | {
      /** Normal with standard deviation sqrt(2 / fanIn) (He et al., for ReLU layers). */
      kind: 'heNormal';
      /** Inputs feeding each unit. */
      fanIn: number;
    }
  | {
      /** Uniform in [min, max). */
      kind: 'uniform';
      /** Lower bound (inclusive). */
      min: number;
      /** Upper bound (exclusive). */
      max: number;
    }
  | {
      /** Normal with the given mean and standard deviation. */
      kind: 'normal';
      /** Mean. */
      mean: number;
      /** Standard deviation. */
      std: number;
    }
  /** Parts initialised separately and joined along the last axis (e.g. an LSTM's forget-gate bias of ones). */
  | {
      /** Parts joined along the last axis. */
      kind: 'concat';
      /** The parts in order; their sizes sum to the last dimension. */
      parts: {
        /** Length of this part along the last axis. */
        size: number;
        /** How this part is initialised. */
        init: Initializer;
      }[];
    };

/**
 * A tensor held by the model: trainable parameters (`params`) or non-trainable state (`state`:
 * running statistics, masks, centroids, memories). Named `<node>/<local name>`.
 */
export interface TensorInfo {
  /** `<node>/<local name>`, or the `shared` name several nodes use. */
  name: string;
  /** Element type. */
  dtype: DType;
  /** Concrete dimensions (parameters have no symbolic dimension). */
  shape: number[];
  /** How the tensor is initialised when a model is created. */
  init: Initializer;
}

/** A whole graph. Nodes are in topological order. */
export interface Graph {
  /** Version of this IR format ({@link SPEC_VERSION}). */
  specVersion: 1;
  /** Op-set version used per domain, e.g. `{ core: 1, 'early-exit': 1 }`. */
  opsets: Record<string, number>;
  /** Values fed to a run. */
  inputs: ValueInfo[];
  /** Values a run returns (by default all of them). */
  outputs: ValueInfo[];
  /** The operations, in topological order. */
  nodes: GraphNode[];
  /** Trainable parameters the nodes use. */
  params: TensorInfo[];
  /** Non-trainable state the nodes use (running statistics, masks...). */
  state: TensorInfo[];
}

/**
 * A graph held in a node's attribute (kind `graph` or `graphs`): an expert, a loop body, a
 * branch. Its values are its own; its parameters and state are declared by the top graph, named
 * after the enclosing node and attribute (`moe1/experts/3/fc1/kernel`). Its first dimension
 * `batch` is the rows the enclosing op gives it.
 */
export type SubGraph = Pick<Graph, 'inputs' | 'outputs' | 'nodes'>;

/** The current IR spec version. */
export const SPEC_VERSION = 1 as const;

/** Splits `domain.Name` into its domain and name. */
export function splitOpType(op: string): {
  /** The plugin domain (`core`), or `''` when the type has no dot. */
  domain: string;
  /** The op name within the domain (`Dense`). */
  name: string;
} {
  const dot = op.lastIndexOf('.');
  return dot <= 0 ? { domain: '', name: op } : { domain: op.slice(0, dot), name: op.slice(dot + 1) };
}
